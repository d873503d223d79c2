"""Connections are pinged only after sitting idle (store.db.make_engine): a connection
the server dropped while it sat in the pool is replaced before anyone uses it."""
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from store import db as store_db
from tests import services


def engine_with_a_dropped_connection():
    url = services.require_postgres().replace("postgresql://", "postgresql+psycopg://", 1)
    engine = store_db.make_engine(url, pool_size=1, max_overflow=0)
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    killer = store_db.make_engine(url)  # the "restart"
    with killer.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    killer.dispose()
    return engine


def test_an_idle_connection_the_server_dropped_is_replaced(monkeypatch):
    monkeypatch.setattr(store_db, "PING_AFTER_IDLE", 0.0)
    engine = engine_with_a_dropped_connection()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(monkeypatch):
    """The other side of the trade: no ping within PING_AFTER_IDLE, so the dropped
    connection fails its statement (a 503 on the web), and the pool recovers after."""
    monkeypatch.setattr(store_db, "PING_AFTER_IDLE", 3600.0)
    engine = engine_with_a_dropped_connection()
    with pytest.raises(OperationalError):
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()

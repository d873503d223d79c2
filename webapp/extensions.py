"""Extensions, created unbound here and attached to an app by `init_app`.

State lives in `app.extensions`, never on these objects, so several apps (tests,
the worker) can coexist. Nothing here connects at import or init time: engines
and Redis clients connect lazily on first use.
"""
from __future__ import annotations

import redis
from flask import Flask, current_app, g, has_request_context
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from store.db import act_for, make_engine
from tasks.app_state import DB_KEY, REDIS_KEY


class DatabaseState:
    """The engine and session factory of one app; one session per app context."""

    def __init__(self, engine: Engine, factory: sessionmaker):
        self.engine = engine
        self.sessionmaker = factory

    @property
    def bind(self) -> Engine | Connection:
        """What sessions are bound to: the engine (a test binds a connection)."""
        return self.sessionmaker.kw["bind"]

    @property
    def session(self) -> Session:
        if "_sluice_session" not in g:
            g._sluice_session = self.sessionmaker()
        return g._sluice_session


class Database:
    def init_app(self, app: Flask) -> None:
        engine = make_engine(app.config["DATABASE_URL"],
                             prepared_statements=app.config["DATABASE_PREPARED_STATEMENTS"],
                             pool_size=app.config["DATABASE_POOL_SIZE"])
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        event.listen(factory, "after_begin", _act_for_request_owner)
        app.extensions[DB_KEY] = DatabaseState(engine, factory)
        app.teardown_appcontext(_close_session)

    @property
    def state(self) -> DatabaseState:
        return current_app.extensions[DB_KEY]

    @property
    def session(self) -> Session:
        return self.state.session


def _act_for_request_owner(_session, _transaction, connection: Connection) -> None:
    """Every transaction of a request made for an owner acts for it, so PostgreSQL's
    row-level security shows it only its own rows (migration 0023); everything else
    (workers, the CLI, admins) is the system. webapp/auth.py says who the owner is."""
    act_for(connection, g.get("acting_owner") if has_request_context() else None)


def _close_session(_exc) -> None:
    session = g.pop("_sluice_session", None)
    if session is not None:
        session.close()  # rolls back anything left uncommitted


def init_redis(app: Flask) -> None:
    """The app's Redis client; code reaches it with tasks.app_state.redis_client()."""
    app.extensions[REDIS_KEY] = redis.Redis.from_url(
        app.config["REDIS_URL"], socket_connect_timeout=1, socket_timeout=2,
        health_check_interval=30)


db = Database()
# Limits are declared per route (webhook sources bring their own); this instance
# only holds storage and failure policy, configured from app.config in init_app.
limiter = Limiter(key_func=get_remote_address)

"""upgrade -> downgrade -> upgrade on both backends, and models == migrations."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tests import services
from webapp.config import normalize_database_url
from webapp.migrate import downgrade, script_heads, upgrade
from webapp.models import metadata
from webhooks.db import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path, worker_index):
    if request.param == "sqlite":
        return services.fresh_sqlite_database("migrations", tmp_path)
    base = services.require_postgres()
    return services.fresh_postgres_database(base, f"sluice_migrations_{worker_index}")


def tables(url: str) -> set[str]:
    engine = make_engine(normalize_database_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_database_url):
    upgrade(empty_database_url)
    expected = set(metadata.tables) | {"alembic_version"}
    assert tables(empty_database_url) == expected
    downgrade(empty_database_url, "base")
    assert tables(empty_database_url) == {"alembic_version"}
    upgrade(empty_database_url)
    assert tables(empty_database_url) == expected
    engine = make_engine(normalize_database_url(empty_database_url))
    try:
        with engine.connect() as connection:
            assert set(MigrationContext.configure(connection).get_current_heads()) \
                == script_heads()
            diff = compare_metadata(MigrationContext.configure(
                connection, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"

"""A thin Alembic wrapper for `flask db upgrade|downgrade|current` and /startupz.

We use plain SQLAlchemy 2 sessions (shared with Celery tasks and the domain
packages) rather than Flask-SQLAlchemy, and Flask-Migrate requires the latter; the
few Alembic commands we need are a handful of lines over `alembic.command`.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute: set_main_option would choke on '%' in passwords.
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(database_url), revision)


def script_heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("")).get_heads())


def database_heads(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())

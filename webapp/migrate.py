"""`flask db upgrade|downgrade|current`: a thin Alembic wrapper, and /startupz's check.

We use plain SQLAlchemy 2 sessions (shared with Celery tasks and the domain
packages) rather than Flask-SQLAlchemy, and Flask-Migrate requires the latter; the
few Alembic commands we need are a handful of lines over `alembic.command`.

Alembic is imported only by the commands that migrate. /startupz needs two facts,
the revisions in the database's alembic_version table and the heads of
migrations/versions, and importing Alembic to read them costs each web worker a
real share of its RSS budget (bench/documents). Both are read here directly;
tests/webapp/test_migrations.py checks them against Alembic's own answers.

The `db` commands reach the flask CLI as a plugin (the `flask.commands` entry point in
setup.cfg), so they run without building the app: a migration needs DATABASE_URL
and nothing else, not the webhook sources, Redis or the broker.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default; migrations/env.py keeps it


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute: set_main_option would choke on '%' in passwords.
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "-1") -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


@functools.cache
def script_heads() -> frozenset[str]:
    """Revisions in migrations/versions that no other revision builds on."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("[!_]*.py"):  # not __init__.py
        names = _constants(path, {"revision", "down_revision"})
        revisions.add(names["revision"])
        down = names.get("down_revision")
        parents.update(down if isinstance(down, (tuple, list)) else [down] if down else [])
    return frozenset(revisions - parents)


def _constants(path: Path, wanted: set[str]) -> dict:
    """Module-level `name = <literal>` (or `name: type = <literal>`) assignments."""
    found = {}
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in wanted:
                found[target.id] = ast.literal_eval(value)
    return found


def database_heads(connection: Connection) -> set[str]:
    if not inspect(connection).has_table(VERSION_TABLE):
        return set()
    return set(connection.scalars(text(f"SELECT version_num FROM {VERSION_TABLE}")))


def _database_url() -> str:
    """MIGRATION_DATABASE_URL (the role that owns the tables), else DATABASE_URL."""
    import os

    from webapp import instance_path
    from webapp.config import settings

    return os.environ.get("MIGRATION_DATABASE_URL") or \
        settings(os.environ, instance_path())["DATABASE_URL"]


# What the application's role may do: read and write rows, never own, alter or
# truncate a table, so it can neither turn row-level security off nor get past it.
GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    # adding and dropping webhook_events' months (migration 0028): revoked from PUBLIC
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}",
    # the tables and sequences later migrations create, too
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
    "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
)


def grant_app_role(database_url: str, role: str) -> list[str]:
    """Grant `role` what the application needs on the tables of `database_url` (run
    as the tables' owner); what is wrong with the role for row-level security, if
    anything (it must not be a superuser, bypass RLS or own the tables)."""
    from store.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            quoted = connection.dialect.identifier_preparer.quote(role)
            for grant in GRANTS:
                connection.execute(text(grant.format(role=quoted)))
            found = connection.execute(text(
                "SELECT rolsuper, rolbypassrls, pg_has_role(:role, tableowner, 'MEMBER') "
                "FROM pg_roles, pg_tables WHERE rolname = :role AND tablename = 'documents'"
                " AND schemaname = 'public'"), {"role": role}).first()
    finally:
        engine.dispose()
    problems = []
    if found and found[0]:
        problems.append(f"{role} is a superuser: row-level security does not bind it")
    if found and found[1]:
        problems.append(f"{role} has BYPASSRLS: row-level security does not bind it")
    if found and found[2]:
        problems.append(f"{role} owns the tables: it could turn row-level security off")
    return problems


@click.group("db", help="Database migrations (Alembic).")
def db_cli() -> None:
    pass


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    upgrade(_database_url(), revision)


@db_cli.command("downgrade")
@click.argument("revision", default="-1")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (default: one step)."""
    downgrade(_database_url(), revision)


@db_cli.command("current")
def db_current() -> None:
    """Print the database's revision and whether it is at head."""
    from store.db import make_engine

    engine = make_engine(_database_url())
    try:
        with engine.connect() as connection:
            current = database_heads(connection)
    finally:
        engine.dispose()
    heads = script_heads()
    behind = "" if current == heads else f" (behind: head is {' '.join(sorted(heads))})"
    click.echo(f"{' '.join(sorted(current)) or '(none)'}{' (head)' if not behind else behind}")


@db_cli.command("grant")
@click.argument("role")
def db_grant(role: str) -> None:
    """Let ROLE, the role the web and the workers connect as, read and write the rows
    (PostgreSQL; run as the tables' owner, as migrations are)."""
    url = _database_url()
    if not url.startswith("postgresql"):
        raise click.ClickException("roles are PostgreSQL's: SQLite has none")
    for problem in grant_app_role(url, role):
        click.echo(f"warning: {problem}", err=True)
    click.echo(f"granted {role} the rows of every table")


@db_cli.command("partition-events")
def db_partition_events() -> None:
    """Partition a populated webhook_events by month, without downtime (PostgreSQL; as
    the tables' owner, once every process runs this release: migration 0028)."""
    from store.db import make_engine, utcnow
    from webhooks.partitions import partition_events

    engine = make_engine(_database_url())
    try:
        click.echo(partition_events(engine, utcnow()))
    finally:
        engine.dispose()

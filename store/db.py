"""Declarative base, column types, engine construction and insert helpers.

Every package's models build on this one base, so one MetaData (with its naming
convention) holds every table, for Alembic and the tests alike.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import time
from typing import Any, ContextManager

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    MetaData,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

# Stable constraint names make Alembic revisions (and their downgrades) portable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type and hands back naive values; comparing those with
    aware ones raises, so we normalise both ways here once.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

SQLITE_BUSY_MS = 30000  # how long a SQLite statement waits for another's lock

_INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


def insert_unless_exists(session: Session, model: type[Base], values: dict[str, Any],
                         unique: list[str], key: str | None = "id") -> Any | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING key: the new key, or None if it existed.

    With key=None the new row comes back as a mapped object, saving a SELECT.
    The UNIQUE constraint decides, in one round trip; a savepoint around a plain
    INSERT would cost two more, and check-then-insert would race.
    """
    dialect = session.get_bind().dialect.name
    if key is None:
        insert = _INSERTS[dialect](model)
        return session.scalar(insert.values(**values)
                              .on_conflict_do_nothing(index_elements=unique)
                              .returning(model))
    # A Core statement built once, with the values as parameters: SQLAlchemy then
    # reuses its compiled form. `.values(**values)` on the ORM entity builds cache
    # keys over every value and takes the ORM bulk path, on every delivery.
    return session.execute(insert_returning(dialect, model.__table__, tuple(unique), key),
                           values).scalar()


@functools.lru_cache(maxsize=None)
def insert_returning(dialect: str, table, unique: tuple[str, ...], key: str):
    """INSERT ... ON CONFLICT (unique) DO NOTHING RETURNING key, built once per shape."""
    return insert_ignoring(dialect, table, unique).returning(table.c[key])


@functools.lru_cache(maxsize=None)
def insert_ignoring(dialect: str, table, unique: tuple[str, ...]):
    """INSERT ... ON CONFLICT (unique) DO NOTHING, built once per shape (rows given as
    parameters: one row or many)."""
    return _INSERTS[dialect](table).on_conflict_do_nothing(index_elements=list(unique))


def core_connection(bind: Engine | Connection, *, autocommit: bool) -> ContextManager[Connection]:
    """A Core connection on `bind`, for a path where a Session is measurable overhead.

    A given Connection is used as it is, in its own transaction (the caller's unit
    of work, or a test's). From an Engine: with autocommit, each statement commits
    as it runs (for one atomic statement: no BEGIN or COMMIT round trips); without,
    one transaction, committed as the block ends.
    """
    if isinstance(bind, Connection):
        return contextlib.nullcontext(bind)
    if autocommit:
        return bind.connect().execution_options(isolation_level="AUTOCOMMIT")
    return bind.begin()


def insert_or_existing(session: Session, model: type[Base], values: dict[str, Any],
                       unique: list[str]) -> tuple[Any, bool]:
    """(the new row, True), or (the row that already held those unique values, False)."""
    row = insert_unless_exists(session, model, values, unique, key=None)
    if row is not None:
        return row, True
    return session.scalar(select(model).filter_by(**{c: values[c] for c in unique})), False


def newest_first(session: Session, model: type[Base], *, limit: int,
                 before_id: int | None = None, **equal: Any) -> list:
    """A page of `model`'s rows, newest (highest id) first, older than `before_id`,
    where each named column equals its value (a None value filters nothing)."""
    query = select(model).order_by(model.id.desc()).limit(limit)
    for column, value in equal.items():
        if value:
            query = query.where(getattr(model, column) == value)
    if before_id:
        query = query.where(model.id < before_id)
    return list(session.scalars(query))


def insert_all_unless_exist(session: Session, model: type[Base], rows: list[dict[str, Any]],
                            unique: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING for many rows at once; rows that exist stay as they are.

    Executed as executemany, which SQLAlchemy batches into multi-row VALUES for
    psycopg (insertmanyvalues) without compiling a new statement per batch.
    """
    if rows:
        insert = _INSERTS[session.get_bind().dialect.name](model)
        session.execute(insert.on_conflict_do_nothing(index_elements=unique), rows)


# The database itself is away or refusing work (refused or dropped connections, a
# server shutting down or starting up, an exhausted pool): nobody's data is at fault.
# The web answers 503 to these, and a task waits them out instead of spending the
# retries that decide when a handler has failed for good.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)
# What a lock wait that ran out says: SQLite past busy_timeout, PostgreSQL past
# lock_timeout (SQLSTATE 55P03). The database is up; someone held a lock too long.
_LOCK_WAIT_SQLITE = ("database is locked", "database table is locked")
_LOCK_NOT_AVAILABLE = "55P03"


def is_lock_wait(exc: BaseException) -> bool:
    """Whether a DATABASE_UNAVAILABLE error is a lock wait that timed out, not an outage."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
        return True
    return type(orig).__module__ == "sqlite3" and str(orig) in _LOCK_WAIT_SQLITE


def make_engine(url: str, prepared_statements: bool = True, **kwargs) -> Engine:
    """Create an engine with the connection settings each backend needs.

    Every backend: statement parameters are left out of error messages
    (hide_parameters), because they hold webhook bodies, names and phone numbers,
    and an error's text reaches logs.
    Postgres: a short connect timeout so a down database answers 503 quickly; with
    `prepared_statements` False, psycopg never prepares one (prepare_threshold=None),
    which PgBouncer's transaction pooling before 1.21 needs: a statement prepared on
    one server connection is missing on the next transaction's.
    SQLite: WAL for concurrent readers, a busy timeout for the processes of the
    embedded default, and explicit BEGIN so SAVEPOINT works (pysqlite otherwise
    manages transactions itself and breaks nested ones).
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    connect_args = {"connect_timeout": 3} if url.startswith("postgresql") else {}
    if connect_args and not prepared_statements:
        connect_args["prepare_threshold"] = None
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    _ping_after_idle(engine)
    return engine


# A connection that sat in the pool this long is pinged before it is handed out.
PING_AFTER_IDLE = 1.0


def _ping_after_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections that were idle.

    `pool_pre_ping` pings on every checkout: a round trip as long as the statement
    itself, on every webhook delivery. A connection in steady use needs none: if the
    server went away under it, the statement fails (503, or a task retry) and
    SQLAlchemy invalidates the whole pool at once. The connections that do go stale
    unseen are those that sat idle (a restart in a quiet spell, an idle timeout in a
    proxy), so those are pinged, as the SQLAlchemy docs' checkout-event recipe does:
    DisconnectionError makes the pool replace the connection and try again.
    """
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(str(exc)) from exc


# Set by code that only reads (the web, for GET and HEAD requests); SQLite only.
_READS_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sluice_reads_only", default=False)


def reads_only() -> contextvars.Token:
    """From now on in this context, transactions only read (on SQLite: a deferred BEGIN,
    no write lock). A write in one fails at once instead of waiting (503
    database_busy). Hand the token to `reads_done` to end it."""
    return _READS_ONLY.set(True)


def reads_done(token: contextvars.Token) -> None:
    _READS_ONLY.reset(token)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        # deleted and overwritten content is zeroed, not left in free pages, so an
        # erased person is gone from the file (privacy/erasure.py checkpoints the WAL)
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # IMMEDIATE takes the write lock up front: several processes then queue on
        # busy_timeout instead of failing a read-to-write lock upgrade. A reader needs
        # no lock at all (WAL gives it a snapshot), so code that only reads says so
        # (reads_only) and begins deferred: it never waits behind a writer, such as an
        # import committing batch after batch.
        connection.exec_driver_sql("BEGIN" if _READS_ONLY.get() else "BEGIN IMMEDIATE")


def fold_sqlite_wal(bind: Engine | Connection) -> bool:
    """On SQLite, checkpoint the WAL into the database file and empty it: the WAL keeps
    pages as they were before a change, which an erasure must not leave behind. False
    if a reader kept it from finishing (the next automatic checkpoint then does)."""
    if bind.dialect.name != "sqlite":
        return True
    raw = (bind if isinstance(bind, Engine) else bind.engine).raw_connection()
    connection = raw.driver_connection
    try:  # outside any transaction (a checkpoint cannot run inside one), and briefly:
        # TRUNCATE waits for every reader, and a request must not wait 30 s for it
        connection.execute("PRAGMA busy_timeout=2000")
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy
    finally:
        connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        raw.close()


# --- row-level security (PostgreSQL; migration 0023) ----------------------------------
# A transaction acting for an owner says so with set_config(..., true): SET LOCAL, gone
# at the transaction's end, so safe behind PgBouncer's transaction pooling. One that
# says nothing is the system and sees every row.
_ACT_FOR = text("SELECT set_config('sluice.owner', :owner, true)")
ACTING_KEY = "sluice.acting_owner"   # Connection.info: what this connection last set


def act_for(connection: Connection, owner_id: int | None) -> None:
    """Make the connection's current transaction act for `owner_id` (None: the system).
    Nothing to say (and no round trip) when it already does or on SQLite."""
    if connection.dialect.name != "postgresql":
        return
    if owner_id is None and connection.info.get(ACTING_KEY) is None:
        return
    connection.execute(_ACT_FOR, {"owner": "" if owner_id is None else str(owner_id)})
    connection.info[ACTING_KEY] = owner_id


def as_system(session: Session) -> None:
    """The rest of the session's current transaction sees every owner's rows: for the
    few checks that must (is another owner's document still using these bytes?)."""
    act_for(session.connection(), None)

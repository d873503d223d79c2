"""Transactional outbox: the table, and writing to it in the caller's transaction.

`enqueue()` adds an `outbox` row to the caller's session, and `insert_with_message()`
writes a row and its outbox row in one Core statement (the webhook ingest path).
Nothing publishes at commit: store.publishing sends committed rows to the broker. A
rolled-back transaction leaves no row, and so publishes nothing.
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import (
    Index,
    Integer,
    String,
    bindparam,
    func,
    insert,
    literal,
    null,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from store import tracing
from store.db import (
    Base,
    BigIntId,
    JSONType,
    UTCDateTime,
    core_connection,
    insert_returning,
    utcnow,
)


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(200))
    kwargs: Mapped[dict] = mapped_column(JSONType)
    queue: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # W3C traceparent/tracestate of the span that asked for the work (tracing on only)
    trace_context: Mapped[dict | None] = mapped_column(JSONType)

    __table_args__ = (
        # The relay only ever reads unpublished rows; keep that scan small.
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=published_at.is_(None),
            sqlite_where=published_at.is_(None),
        ),
    )


def backlog(session: Session) -> tuple[int, dt.datetime | None]:
    """(rows not yet published, when the oldest of them was written)."""
    count, oldest = session.execute(select(func.count(), func.min(OutboxMessage.created_at))
                                    .where(OutboxMessage.published_at.is_(None))).one()
    return count, oldest


def enqueue(session: Session, task_name: str, kwargs: dict[str, Any],
            queue: str | None = None) -> OutboxMessage:
    """Add a message to the caller's transaction; a relay publishes it once committed."""
    row = OutboxMessage(task_name=task_name, kwargs=kwargs, queue=queue,
                        trace_context=tracing.capture())
    session.add(row)
    return row


def insert_with_message(bind: Engine | Connection, model, values: dict[str, Any],
                        unique: list[str], task_name: str, argument: str) -> int | None:
    """INSERT a row unless its unique values exist, and with it an outbox row asking
    `task_name` for it (`{argument: the new id}`): the new id, or None if the row
    existed (and nothing was written). The workers' relay publishes it.

    For the path every webhook delivery takes, so it is Core and no Session. Given
    an Engine, it is committed on return: on PostgreSQL one statement does both (a
    data-modifying CTE), atomic by itself, so it runs in autocommit, one round trip
    with no BEGIN and no COMMIT; elsewhere (SQLite) it is two statements in one
    transaction. Given a Connection, it runs in that connection's transaction.
    """
    context = tracing.capture()
    dialect = bind.dialect.name
    if dialect != "postgresql":
        with core_connection(bind, autocommit=False) as connection:
            new_id = connection.execute(
                insert_returning(dialect, model.__table__, tuple(unique), "id"), values).scalar()
            if new_id is not None:  # created_at and attempts: the columns' defaults
                connection.execute(insert(OutboxMessage.__table__), {
                    "task_name": task_name, "kwargs": {argument: new_id}, "queue": None,
                    "trace_context": context})
            return new_id
    statement = _insert_with_message(model.__table__, tuple(values), tuple(unique), argument)
    with core_connection(bind, autocommit=True) as connection:
        return connection.execute(statement, {
            **values, "outbox_task_name": task_name, "outbox_trace_context": context,
            "outbox_created_at": utcnow()}).scalar()


@functools.lru_cache(maxsize=None)
def _insert_with_message(table, columns: tuple[str, ...], unique: tuple[str, ...],
                         argument: str):
    """Built once per shape: a cached statement with the values as bound parameters."""
    outbox = OutboxMessage.__table__
    inserted = (postgresql_insert(table).values({name: bindparam(name, type_=table.c[name].type)
                                                 for name in columns})
                .on_conflict_do_nothing(index_elements=list(unique))
                .returning(table.c.id).cte("inserted"))
    message = (insert(outbox).from_select(
        ["task_name", "kwargs", "queue", "trace_context", "created_at", "attempts"],
        select(bindparam("outbox_task_name"),
               func.jsonb_build_object(argument, inserted.c.id),
               null(), bindparam("outbox_trace_context", type_=JSONType),
               bindparam("outbox_created_at", type_=UTCDateTime()), literal(0)))
        .returning(outbox.c.id).cte("message"))
    return select(inserted.c.id).select_from(inserted).join(message, true())

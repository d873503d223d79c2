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
    Sequence,
    String,
    bindparam,
    func,
    insert,
    literal,
    null,
    select,
    true,
    update,
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
    insert_ignoring,
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
                        claim, claimed_by: str, task_name: str,
                        argument: str) -> int | None:
    """INSERT a row unless its key is claimed, and with it an outbox row asking
    `task_name` for it (`{argument: the new id}`): the new id, or None if the key
    was already claimed (and nothing was written). The workers' relay publishes it.

    The key is a row of the `claim` table (its primary key is the key's columns,
    `claimed_by` names the row that claimed it, and every other column is copied
    from `values`). It is written first, and the row only if the key was new, so the
    claim table's primary key decides duplicates, even for concurrent inserts.

    For the path every webhook delivery takes, so it is Core and no Session. Given
    an Engine, it is committed on return: on PostgreSQL one statement does all three
    (a data-modifying CTE), atomic by itself, so it runs in autocommit, one round
    trip with no BEGIN and no COMMIT; elsewhere (SQLite) it is four statements in one
    transaction. Given a Connection, it runs in that connection's transaction.
    """
    context = tracing.capture()
    dialect = bind.dialect.name
    key_values = {column.name: values[column.name] for column in claim.columns
                  if column.name != claimed_by}
    if dialect != "postgresql":
        with core_connection(bind, autocommit=False) as connection:
            # 0 until the row has its id; one transaction, so no one sees the 0
            if not connection.execute(insert_ignoring(
                    dialect, claim, tuple(column.name for column in claim.primary_key)),
                                      {**key_values, claimed_by: 0}).rowcount:
                return None
            new_id = connection.execute(insert(model.__table__).returning(model.__table__.c.id),
                                        values).scalar_one()
            connection.execute(update(claim).where(*(
                claim.c[name] == value for name, value in key_values.items()
                if claim.c[name].primary_key)).values({claimed_by: new_id}))
            connection.execute(insert(OutboxMessage.__table__), {
                "task_name": task_name, "kwargs": {argument: new_id}, "queue": None,
                "trace_context": context})
            return new_id
    statement = _insert_with_message(model.__table__, tuple(values), claim, claimed_by,
                                     argument)
    with core_connection(bind, autocommit=True) as connection:
        return connection.execute(statement, {
            **values, "outbox_task_name": task_name, "outbox_trace_context": context,
            "outbox_created_at": utcnow()}).scalar()


@functools.lru_cache(maxsize=None)
def _insert_with_message(table, columns: tuple[str, ...], claim, claimed_by: str,
                         argument: str):
    """Built once per shape: a cached statement with the values as bound parameters.
    The new row's id is drawn from its table's sequence as the key is claimed."""
    def parameter(name: str, of):
        return bindparam(name, type_=of.c[name].type)
    claimed = (postgresql_insert(claim).values({
        column.name: (Sequence(f"{table.name}_id_seq").next_value()
                      if column.name == claimed_by else parameter(column.name, claim))
        for column in claim.columns})
        .on_conflict_do_nothing()
        .returning(claim.c[claimed_by]).cte("claimed"))
    copied = [name for name in columns if name != "id"]
    inserted = (insert(table).from_select(
        ["id", *copied],
        select(claimed.c[claimed_by], *(parameter(name, table) for name in copied)))
        .returning(table.c.id).cte("inserted"))
    outbox = OutboxMessage.__table__
    message = (insert(outbox).from_select(
        ["task_name", "kwargs", "queue", "trace_context", "created_at", "attempts"],
        select(bindparam("outbox_task_name"),
               func.jsonb_build_object(argument, inserted.c.id),
               null(), bindparam("outbox_trace_context", type_=JSONType),
               bindparam("outbox_created_at", type_=UTCDateTime()), literal(0)))
        .returning(outbox.c.id).cte("message"))
    return select(inserted.c.id).select_from(inserted).join(message, true())

"""Transactional outbox: enqueue work in the caller's transaction; it is published after.

`enqueue()` adds an `outbox` row to the caller's session, and `insert_with_message()`
writes a row and its outbox row in one Core statement (the webhook ingest path).
Nothing publishes at commit. Every worker runs a relay (tasks/relay.py) that calls
`relay_unpublished()` every OUTBOX_POLL_INTERVAL, `SKIP LOCKED` between workers, so
each row is sent once; beat's `relay_outbox` job is the safety net for rows no
worker's relay took. If the broker is down the row simply stays unpublished until
a relay gets it through, so committed work is never lost between the database and
the broker. A rolled-back transaction leaves no row, and so publishes nothing.

(Workers used to publish what their own tasks enqueued right after commit as well,
which saved at most one poll interval per hop; the relay, seeing the row before
that publish was marked, sent it a second time, and each follow-on task ran twice.)

The publisher is any callable taking a `Message`; the Celery one lives in `tasks`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any, Callable

from prometheus_client import Counter
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
    insert_returning,
    utcnow,
)

PUBLISHED = Counter("sluice_outbox_published_total", "Outbox messages published", ["path"])
PUBLISH_FAILURES = Counter(
    "sluice_outbox_publish_failures_total", "Outbox publishes that failed", ["path"]
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


@dataclasses.dataclass(frozen=True)
class Message:
    id: int
    task_name: str
    kwargs: dict[str, Any]
    queue: str | None
    trace_context: dict[str, str] | None = None


Publisher = Callable[[Message], None]


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


@dataclasses.dataclass
class RelayResult:
    published: int = 0
    failed: int = 0


def relay_unpublished(session: Session, publisher: Publisher, *,
                      older_than: dt.timedelta, batch_size: int = 500) -> RelayResult:
    """Publish rows that are still unpublished, oldest first, in one batch.

    `older_than` leaves fresh rows to the workers' relays (beat's safety net passes
    OUTBOX_RELAY_AFTER). On Postgres `SKIP LOCKED` lets several relays share the
    backlog without double sends.
    """
    cutoff = utcnow() - older_than
    table = OutboxMessage.__table__
    # Core rows, not ORM objects, and one UPDATE for the batch: each worker's relay
    # runs this in the process that also feeds its pool, for every message.
    rows = session.execute(
        select(table.c.id, table.c.task_name, table.c.kwargs, table.c.queue,
               table.c.trace_context)
        .where(table.c.published_at.is_(None), table.c.created_at <= cutoff)
        .order_by(table.c.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    result, published = RelayResult(), []
    for row in rows:
        try:
            publisher(Message(*row))
        except Exception as exc:
            session.execute(update(table).where(table.c.id == row.id).values(
                attempts=table.c.attempts + 1,
                last_error=f"{type(exc).__name__}: {exc}"[:500]))
            result.failed += 1
            PUBLISH_FAILURES.labels("relay").inc()
            break  # broker down: stop hammering it, the next run resumes here
        published.append(row.id)
    if published:
        session.execute(update(table).where(table.c.id.in_(published))
                        .values(published_at=utcnow()))
    result.published = len(published)
    session.commit()
    if result.published:
        PUBLISHED.labels("relay").inc(result.published)
    return result

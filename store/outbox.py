"""Transactional outbox: enqueue work in the caller's transaction; it is published after.

`enqueue()` adds an `outbox` row to the caller's session, and `insert_with_message()`
writes a row and its outbox row in one Core statement (the webhook ingest path).
Who publishes:
- the web publishes nothing: every worker runs a relay (tasks/relay.py) that calls
  `relay_unpublished()` every fraction of a second;
- a session with a publisher in `session.info[PUBLISHER_KEY]` (the worker's and
  beat's) hands its messages to it as soon as it commits;
- beat's `relay_outbox` job is the safety net for rows nobody else published.
If the broker is down the row simply stays unpublished until a relay gets it
through, so committed work is never lost between the database and the broker. A
rolled-back transaction publishes nothing.

The publisher is any callable taking a `Message`; the Celery one lives in `tasks`.
"""
from __future__ import annotations

import atexit
import dataclasses
import datetime as dt
import functools
import logging
import os
import threading
from typing import Any, Callable

from prometheus_client import Counter
from sqlalchemy import (Index, Integer, String, bindparam, event, func, insert, inspect, literal,
                        null, select, text, true, update)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from store import tracing
from store.db import (BigIntId, Base, JSONType, UTCDateTime, core_connection, insert_returning,
                      utcnow)

log = logging.getLogger(__name__)

PUBLISHER_KEY = "outbox_publisher"
_PENDING_KEY = "outbox_pending"

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
    """Add a message to the caller's transaction; it is published after commit."""
    context = tracing.capture()
    row = OutboxMessage(task_name=task_name, kwargs=kwargs, queue=queue, trace_context=context)
    session.add(row)
    # Keep the values on the Python side: after commit the row is expired and
    # reading its attributes would need SQL, which after_commit cannot run.
    session.info.setdefault(_PENDING_KEY, []).append((row, task_name, kwargs, queue, context))
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


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    publisher = session.info.get(PUBLISHER_KEY)
    if not pending or publisher is None:
        return
    messages = []
    for row, task_name, kwargs, queue, context in pending:
        state = inspect(row)
        # Rows added in a savepoint that was rolled back are transient again.
        if state.persistent and state.identity:
            messages.append(Message(state.identity[0], task_name, kwargs, queue, context))
    published = []
    for message in messages:
        try:
            publisher(message)
        except Exception as exc:  # the relay will retry; never fail the caller
            PUBLISH_FAILURES.labels("after_commit").inc()
            log.warning("outbox publish failed, left for the relay",
                        extra={"outbox_id": message.id, "error": type(exc).__name__})
            break  # the broker is most likely down: leave the rest to the relay too
        published.append(message.id)
    if published:
        PUBLISHED.labels("after_commit").inc(len(published))
        bind = session.get_bind()
        if isinstance(bind, Engine):
            published_marks.add(bind, published)
        else:  # a session joined to its caller's connection: mark in that transaction, now
            _mark_published(bind, session.join_transaction_mode, published)


@event.listens_for(Session, "after_transaction_end")
def _forget_rolled_back(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING_KEY, None)


def _mark_published(bind, join_mode: str, ids: list[int]) -> None:
    # A fresh session on the same bind: the committed one cannot run SQL here.
    with Session(bind=bind, join_transaction_mode=join_mode) as marker:
        if marker.get_bind().dialect.name == "postgresql":
            # Losing this mark in a crash only means the relay publishes the message
            # again (tasks are idempotent), so it need not wait for its own fsync.
            marker.execute(text("SET LOCAL synchronous_commit = off"))
        marker.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), OutboxMessage.published_at.is_(None))
            .values(published_at=utcnow())
        )
        marker.commit()


class PublishedMarks:
    """Marks published rows in batches, off the request path.

    Each mark is bookkeeping only: if the process dies before flushing, the
    relay publishes those messages again and the idempotent tasks absorb it. A
    flusher thread per process (started lazily, so after any fork) writes one
    UPDATE for everything published in the last FLUSH_INTERVAL.
    """

    FLUSH_INTERVAL = 0.2

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[Engine, list[int]] = {}
        self._wake = threading.Event()
        self._pid: int | None = None

    def add(self, engine: Engine, ids: list[int]) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use in this process
                self._pid = os.getpid()
                self._pending = {}
                threading.Thread(target=self._run, name="outbox-marks", daemon=True).start()
            self._pending.setdefault(engine, []).extend(ids)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for engine, ids in pending.items():
            try:
                _mark_published(engine, "conditional_savepoint", ids)
            except Exception as exc:  # the relay will publish these again
                log.warning("could not mark outbox rows published",
                            extra={"count": len(ids), "error": type(exc).__name__})

    def _run(self) -> None:
        atexit.register(self.flush)
        while True:
            self._wake.wait(self.FLUSH_INTERVAL)
            self.flush()


published_marks = PublishedMarks()


@dataclasses.dataclass
class RelayResult:
    published: int = 0
    failed: int = 0


def relay_unpublished(session: Session, publisher: Publisher, *,
                      older_than: dt.timedelta, batch_size: int = 500) -> RelayResult:
    """Publish rows that are still unpublished, oldest first, in one batch.

    `older_than` leaves fresh rows to their own after-commit publish. On Postgres
    `SKIP LOCKED` lets several relays share the backlog without double sends.
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

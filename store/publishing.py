"""Publishing the outbox: committed rows go to the broker, each once.

One function does it, `publish_pending()`, and two things call it, both named
"relay": every worker's relay thread (tasks/relay.py), each OUTBOX_POLL_INTERVAL,
and beat's `relay_outbox` job (cron/relay.py), the safety net for rows no worker's
relay took (OUTBOX_RELAY_AFTER). `SKIP LOCKED` lets relays share the backlog. If the
broker is down a row simply stays unpublished until a relay gets it through, so
committed work is never lost between the database and the broker.

(Workers used to publish what their own tasks enqueued right after commit as well,
which saved at most one poll interval per hop; the relay, seeing the row before
that publish was marked, sent it a second time, and each follow-on task ran twice.)

The publisher is any callable taking a `Message`; the Celery one is
tasks.celery_app.outbox_publisher.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Callable

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.db import utcnow
from store.outbox import OutboxMessage

PUBLISHED = Counter("sluice_outbox_published_total", "Outbox messages published", ["path"])
PUBLISH_FAILURES = Counter(
    "sluice_outbox_publish_failures_total", "Outbox publishes that failed", ["path"]
)


@dataclasses.dataclass(frozen=True)
class Message:
    id: int
    task_name: str
    kwargs: dict[str, Any]
    queue: str | None
    trace_context: dict[str, str] | None = None


Publisher = Callable[[Message], None]


@dataclasses.dataclass
class PublishResult:
    published: int = 0
    failed: int = 0


def publish_pending(session: Session, publisher: Publisher, *,
                    older_than: dt.timedelta, batch_size: int = 500) -> PublishResult:
    """Publish rows that are still unpublished, oldest first, in one batch.

    `older_than` leaves fresh rows to the workers' relays (beat's safety net passes
    OUTBOX_RELAY_AFTER). On PostgreSQL `SKIP LOCKED` lets several relays share the
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
    result, published = PublishResult(), []
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

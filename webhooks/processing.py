"""Run the handler for a stored event, record failures, replay dead events."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from webhooks import audit
from webhooks.ingest import PROCESS_TASK, parse_json
from webhooks.db import utcnow
from webhooks.models import DEAD, FAILED, PROCESSED, RECEIVED, WebhookEvent
from webhooks.outbox import enqueue
from webhooks.payments import apply_update
from webhooks.providers import PAYMENT_READERS, PayloadError
from webhooks.whatsapp import apply_notification


class EventNotFound(LookupError):
    pass


def process(session: Session, event_id: int) -> str:
    """Apply one event's effect and mark it processed; the caller commits.

    Safe to run twice: handlers are idempotent, so a redelivery or a replay of an
    already processed event changes nothing.
    """
    event = session.scalar(select(WebhookEvent).where(WebhookEvent.id == event_id)
                           .with_for_update())
    if event is None:
        raise EventNotFound(event_id)
    if event.body is None:
        raise PayloadError("the body was purged by retention")
    payload = parse_json(event.body)
    if event.kind == "whatsapp":
        apply_notification(session, payload)
    else:
        reader = PAYMENT_READERS.get(event.provider)
        if reader is None:
            raise PayloadError(f"no handler for provider {event.provider!r}")
        update = reader(payload, event.provider, event.received_at)
        if update is not None:
            apply_update(session, update)
    event.status, event.processed_at = PROCESSED, utcnow()
    event.attempts += 1
    event.last_error = None
    return event.status


def record_failure(session: Session, event_id: int, error: BaseException, *, dead: bool) -> None:
    """Note a failed attempt; `dead` parks the event until someone replays it."""
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return
    event.status = DEAD if dead else FAILED
    event.attempts += 1
    event.last_error = f"{type(error).__name__}: {error}"[:1000]


def replay(session: Session, event_id: int, actor: str) -> WebhookEvent:
    """Deliberately run the handler again (it is idempotent), with an audit entry."""
    event = session.get(WebhookEvent, event_id)
    if event is None:
        raise EventNotFound(event_id)
    previous = event.status
    event.status, event.enqueued_at = RECEIVED, utcnow()
    enqueue(session, PROCESS_TASK, {"event_id": event.id}, queue="webhooks")
    audit.record(session, actor, "webhook_event.replay", "webhook_event", event.id,
                 {"previous_status": previous, "source": event.source})
    return event


def list_events(session: Session, *, status: str | None = None, source: str | None = None,
                limit: int = 50, before_id: int | None = None) -> list[WebhookEvent]:
    query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
    if status:
        query = query.where(WebhookEvent.status == status)
    if source:
        query = query.where(WebhookEvent.source == source)
    if before_id:
        query = query.where(WebhookEvent.id < before_id)
    return list(session.scalars(query))

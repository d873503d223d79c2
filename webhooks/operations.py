"""What operators do with webhook events and WhatsApp media: find, count, inspect,
replay, retry. The admin API, the console and the CLI all call these, so a bulk
replay is the same (oldest first, capped, audited) whichever of them asks.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payments.ledger import Payment
from payments.providers import PROVIDERS
from store import audit
from store.db import newest_first, utcnow
from store.outbox import enqueue
from store.payloads import PayloadError
from store.task_names import FETCH_MEDIA, PROCESS_EVENT
from webhooks.ingest import parse_json
from webhooks.models import RECEIVED, WebhookEvent
from webhooks.processing import EventNotFound
from whatsapp import PROVIDERS as WHATSAPP_PROVIDERS
from whatsapp import WhatsAppMedia, WhatsAppMessage
from whatsapp.models import MEDIA_PENDING

__all__ = ["EventFilter", "EventNotFound", "MediaNotFound", "count_events", "effects",
           "find_events", "find_messages", "get_event", "get_message", "list_media",
           "media_of", "replay", "replay_matching", "retry_media"]


class MediaNotFound(LookupError):
    pass


def get_event(session: Session, event_id: int, for_update: bool = False) -> WebhookEvent:
    """`for_update`: locked until the transaction ends (a write that checked it first)."""
    event = session.get(WebhookEvent, event_id, with_for_update=for_update)
    if event is None:
        raise EventNotFound(event_id)
    return event


def replay(session: Session, event_id: int, actor: str) -> WebhookEvent:
    """Deliberately run the handler again (it is idempotent), with an audit entry."""
    event = get_event(session, event_id)
    previous = event.status
    event.status, event.enqueued_at = RECEIVED, utcnow()
    enqueue(session, PROCESS_EVENT, {"event_id": event.id})
    audit.record(session, actor, "webhook_event.replay", "webhook_event", event.id,
                 {"previous_status": previous, "source": event.source})
    return event


@dataclasses.dataclass(frozen=True)
class EventFilter:
    """Which events an operator means: any field left None matches everything."""
    source: str | None = None
    status: str | None = None
    event_type: str | None = None
    received_from: dt.datetime | None = None
    received_to: dt.datetime | None = None

    def where(self, query):
        for column, value in ((WebhookEvent.source, self.source),
                              (WebhookEvent.status, self.status),
                              (WebhookEvent.event_type, self.event_type)):
            if value:
                query = query.where(column == value)
        if self.received_from:
            query = query.where(WebhookEvent.received_at >= self.received_from)
        if self.received_to:
            query = query.where(WebhookEvent.received_at < self.received_to)
        return query


def find_events(session: Session, which: EventFilter, *, limit: int = 50,
                before_id: int | None = None) -> list[WebhookEvent]:
    """One page of matching events, newest first (`before_id`: the next page)."""
    query = which.where(select(WebhookEvent)).order_by(WebhookEvent.id.desc()).limit(limit)
    if before_id:
        query = query.where(WebhookEvent.id < before_id)
    return list(session.scalars(query))


def count_events(session: Session, which: EventFilter) -> int:
    return session.scalar(which.where(select(func.count()).select_from(WebhookEvent)))


def replay_matching(session: Session, which: EventFilter, cap: int, actor: str) -> int:
    """Replay up to `cap` matching events, oldest first, each audited; how many."""
    ids = list(session.scalars(which.where(select(WebhookEvent.id))
                               .order_by(WebhookEvent.id).limit(cap)))
    for event_id in ids:
        replay(session, event_id, actor)
    filters = {name: str(value) for name, value in dataclasses.asdict(which).items() if value}
    audit.record(session, actor, "webhook_event.replay_matching", "webhook_event", "*",
                 {"count": len(ids), "cap": cap, **filters})
    return len(ids)


def effects(session: Session, event: WebhookEvent) -> dict[str, list]:
    """What the event's payload names that the handler changes: the payment it moves,
    or the WhatsApp messages (and their media) it stores or updates. Read again from
    the stored body; an unreadable or purged one names nothing."""
    found: dict[str, list] = {"payments": [], "messages": [], "media": []}
    if event.body is None:
        return found
    try:
        if event.kind == "whatsapp":
            reader = WHATSAPP_PROVIDERS.get(event.provider)
            notification = reader.read(reader.parse(event.body)) if reader else None
            wamids = [m.wamid for m in notification.messages] + \
                [s.wamid for s in notification.statuses] if notification else []
            found["messages"] = list(session.scalars(select(WhatsAppMessage).where(
                WhatsAppMessage.wamid.in_(wamids)))) if wamids else []
            found["media"] = list(session.scalars(select(WhatsAppMedia).where(
                WhatsAppMedia.wamid.in_(wamids)).order_by(WhatsAppMedia.id))) if wamids else []
        elif (provider := PROVIDERS.get(event.provider)) is not None:
            change = provider.read_event(parse_json(event.body), event.provider,
                                         event.received_at)
            if change is not None:
                found["payments"] = list(session.scalars(select(Payment).where(
                    Payment.provider == change.provider, Payment.reference == change.reference)))
    except PayloadError:
        pass
    return found


def get_media(session: Session, media_id: int, for_update: bool = False) -> WhatsAppMedia:
    media = session.get(WhatsAppMedia, media_id, with_for_update=for_update)
    if media is None:
        raise MediaNotFound(media_id)
    return media


def retry_media(session: Session, media_id: int, actor: str) -> WhatsAppMedia:
    """Fetch again (an operator's decision), queued with an audit entry; the caller commits."""
    media = get_media(session, media_id)
    previous = media.status
    media.status, media.error_code, media.error_message = MEDIA_PENDING, None, None
    media.document_id, media.finished_at, media.enqueued_at = None, None, utcnow()
    enqueue(session, FETCH_MEDIA, {"media_id": media.id})
    audit.record(session, actor, "whatsapp_media.retry", "whatsapp_media", media.id,
                 {"previous_status": previous, "source": media.source})
    return media


def list_media(session: Session, *, status: str | None = None, source: str | None = None,
               limit: int = 50, before_id: int | None = None) -> list[WhatsAppMedia]:
    return newest_first(session, WhatsAppMedia, limit=limit, before_id=before_id,
                        status=status, source=source)


def find_messages(session: Session, *, source: str | None = None, after_id: int = 0,
                  limit: int = 100) -> list[WhatsAppMessage]:
    """Stored WhatsApp messages, in the order they were stored, after the cursor."""
    query = select(WhatsAppMessage).where(WhatsAppMessage.id > after_id)
    if source:
        query = query.where(WhatsAppMessage.source == source)
    return list(session.scalars(query.order_by(WhatsAppMessage.id).limit(limit)))


def get_message(session: Session, wamid: str) -> WhatsAppMessage | None:
    return session.scalar(select(WhatsAppMessage).where(WhatsAppMessage.wamid == wamid))


def media_of(session: Session, message_ids: list[int]) -> dict[int, list[WhatsAppMedia]]:
    """Each message's media items, in their order."""
    found: dict[int, list[WhatsAppMedia]] = {}
    if message_ids:
        for item in session.scalars(select(WhatsAppMedia).where(
                WhatsAppMedia.message_id.in_(message_ids)).order_by(WhatsAppMedia.position)):
            found.setdefault(item.message_id, []).append(item)
    return found

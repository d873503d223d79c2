"""Run the handler for a stored event, record failures, replay dead events."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Mapping

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from payments.ledger import Payment, apply_update
from payments.providers import PROVIDERS
from store import audit
from store.db import DATABASE_UNAVAILABLE, newest_first, utcnow
from store.outbox import enqueue
from store.payloads import PayloadError, describe_error
from store.task_names import PROCESS_EVENT
from webhooks.ingest import parse_json
from webhooks.models import DEAD, FAILED, PROCESSED, RECEIVED, WebhookEvent
from webhooks.sources import Source
from webhooks.whatsapp import PROVIDERS as WHATSAPP_PROVIDERS
from webhooks.whatsapp import WhatsAppMedia, WhatsAppMessage, apply_notification


class EventNotFound(LookupError):
    pass


_EVENTS = WebhookEvent.__table__
# Marks the event processed and reads what the handler needs in one round trip; the
# UPDATE also takes the row lock that serialises a replay with a redelivery. If the
# handler fails, the caller rolls back and the mark goes with it. A Core statement
# built once: the ORM SELECT ... FOR UPDATE and its flush were a large share of
# the worker's CPU per event.
_CLAIM = (update(_EVENTS).where(_EVENTS.c.id == bindparam("event_id"))
          .values(status=PROCESSED, processed_at=bindparam("now"),
                  attempts=_EVENTS.c.attempts + 1, last_error=None)
          .returning(_EVENTS.c.kind, _EVENTS.c.provider, _EVENTS.c.body,
                     _EVENTS.c.received_at, _EVENTS.c.source))


def process(session: Session, event_id: int,
            sources: Mapping[str, Source] | None = None) -> str:
    """Apply one event's effect and mark it processed; the caller commits.

    Safe to run twice: handlers are idempotent, so a redelivery or a replay of an
    already processed event changes nothing. `sources` (the configured ones) say
    which WhatsApp sources fetch the media their messages carry.
    """
    event = session.execute(_CLAIM, {"event_id": event_id, "now": utcnow()}).first()
    if event is None:
        raise EventNotFound(event_id)
    cached = session.identity_map.get(session.identity_key(WebhookEvent, event_id))
    if cached is not None:  # loaded earlier in this session: let it read the new state
        session.expire(cached)
    if event.body is None:
        raise PayloadError("the body was purged by retention")
    if event.kind == "whatsapp":  # each WhatsApp provider reads its own wire format
        source = (sources or {}).get(event.source)
        apply_notification(session, event.body, event.provider, event.source,
                           fetch_media=source is not None and source.media is not None)
    else:
        payload = parse_json(event.body)
        provider = PROVIDERS.get(event.provider)
        if provider is None:  # a source whose provider has since been removed
            raise PayloadError(f"no handler for provider {event.provider!r}")
        change = provider.read_event(payload, event.provider, event.received_at)
        if change is not None:
            apply_update(session, change)
    return PROCESSED


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


class WorkerLost(Exception):
    """The worker handling the event died on every delivery."""


# Errors the same event will raise on every attempt: the database refusing a value
# (DataError) and text that cannot be encoded are the data's fault, like a
# PayloadError, whichever reader let them through.
UNRETRIABLE = (PayloadError, DataError, UnicodeError)


def is_final(error: BaseException, retries_done: int, max_retries: int) -> bool:
    """Bad data is dead at once; anything else once its retries are spent, except the
    database being away, which is waited out however long it lasts.

    The last of those: an attempt that finds the database going down or coming back
    up can fail to run the handler and yet manage to record the failure, and it must
    not park an event that has nothing wrong with it.
    """
    if isinstance(error, DATABASE_UNAVAILABLE):
        return False
    original = getattr(error, "orig", None)
    return (isinstance(error, UNRETRIABLE) or isinstance(original, UnicodeError)
            or retries_done >= max_retries)


def park(session: Session, event_id: int) -> None:
    """Give up on an event whose worker kept dying: dead, until someone replays it."""
    event = session.get(WebhookEvent, event_id)
    if event is not None and event.status != PROCESSED:
        record_failure(session, event_id, WorkerLost("its worker died on every delivery"),
                       dead=True)


def record_failure(session: Session, event_id: int, error: BaseException, *, dead: bool) -> None:
    """Note a failed attempt; `dead` parks the event until someone replays it."""
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return
    event.status = DEAD if dead else FAILED
    event.attempts += 1
    event.last_error = describe_error(error)


def replay(session: Session, event_id: int, actor: str) -> WebhookEvent:
    """Deliberately run the handler again (it is idempotent), with an audit entry."""
    event = session.get(WebhookEvent, event_id)
    if event is None:
        raise EventNotFound(event_id)
    previous = event.status
    event.status, event.enqueued_at = RECEIVED, utcnow()
    enqueue(session, PROCESS_EVENT, {"event_id": event.id})
    audit.record(session, actor, "webhook_event.replay", "webhook_event", event.id,
                 {"previous_status": previous, "source": event.source})
    return event


def list_events(session: Session, *, status: str | None = None, source: str | None = None,
                limit: int = 50, before_id: int | None = None) -> list[WebhookEvent]:
    return newest_first(session, WebhookEvent, limit=limit, before_id=before_id,
                        status=status, source=source)


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

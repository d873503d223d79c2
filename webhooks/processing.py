"""Run the handler for a stored event, and record its failures (what operators do with
events, replay among it, is webhooks/operations.py's).

Each kind of event has one `Handler` in HANDLERS: how it reads a stored body, and
what it changes. A payment moves the ledger, a WhatsApp notification stores messages,
and a generic event (a signed sender with no handler of its own, such as GitHub)
becomes a `webhook.received` event in the event log, carrying its verified payload.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from payments.confirmation import Confirmer, confirmed
from payments.ledger import apply_update
from payments.providers import PROVIDERS
from store import events, subjects
from store.db import DATABASE_UNAVAILABLE, utcnow
from store.payloads import PayloadError, describe_error
from store.signatures import CONFIRMED
from webhooks.ingest import parse_json
from webhooks.models import DEAD, FAILED, PROCESSED, WebhookEvent
from webhooks.sources import Source
from whatsapp import PROVIDERS as WHATSAPP
from whatsapp import apply_notification


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
                  attempts=_EVENTS.c.attempts + 1, last_error=None, subjects_linked=True)
          .returning(_EVENTS.c.id, _EVENTS.c.kind, _EVENTS.c.provider, _EVENTS.c.body,
                     _EVENTS.c.received_at, _EVENTS.c.source, _EVENTS.c.event_type,
                     _EVENTS.c.event_key, _EVENTS.c.trust))


@dataclasses.dataclass(frozen=True)
class Context:
    """What a handler may use besides the session: the configured sources (which
    WhatsApp sources fetch media) and the payment providers' status clients (which
    confirm a delivery that is not signed over its content), by name."""
    sources: Mapping[str, Source] = dataclasses.field(default_factory=dict)
    confirmers: Mapping[str, Confirmer] = dataclasses.field(default_factory=dict)


def process(session: Session, event_id: int, context: Context | None = None) -> str:
    """Apply one event's effect and mark it processed; the caller commits.

    Safe to run twice: handlers are idempotent, so a redelivery or a replay of an
    already processed event changes nothing.
    """
    context = context or Context()
    event = session.execute(_CLAIM, {"event_id": event_id, "now": utcnow()}).first()
    if event is None:
        raise EventNotFound(event_id)
    cached = session.identity_map.get(session.identity_key(WebhookEvent, event_id))
    if cached is not None:  # loaded earlier in this session: let it read the new state
        session.expire(cached)
    if event.body is None:
        raise PayloadError("the body was purged by retention")
    handler = HANDLERS[event.kind]
    payload = handler.read(event.provider, event.body)
    # the people the body names, linked to it in this transaction (store/subjects.py)
    subjects.link(session, subjects.WEBHOOK_EVENT, event_id, subjects.indexes(payload))
    handler.apply(session, event, payload, context)
    return PROCESSED


def _read_whatsapp(provider: str, body: bytes) -> Any:
    # each WhatsApp provider parses its own wire format (PayloadError if it cannot)
    reader = WHATSAPP.get(provider)
    if reader is None:  # a source whose provider has since been removed
        raise PayloadError(f"no WhatsApp reader for provider {provider!r}")
    return reader.parse(body)


def _read_json(provider: str, body: bytes) -> Any:
    return parse_json(body)  # None if not JSON: the handler finds nothing it acts on


def _apply_payment(session: Session, event, payload: Any, context: Context) -> None:
    provider = PROVIDERS.get(event.provider)
    if provider is None:  # a source whose provider has since been removed
        raise PayloadError(f"no handler for provider {event.provider!r}")
    change = provider.read_event(payload, event.provider, event.received_at)
    if change is None:
        return
    trust = event.trust
    if provider.confirm:  # the ledger takes the API's word, and the event says so
        change = confirmed(session, change, context.confirmers.get(provider.name))
        trust = CONFIRMED
        session.execute(update(_EVENTS).where(_EVENTS.c.id == event.id).values(trust=trust))
    apply_update(session, dataclasses.replace(change, trust=trust), source=event.source)


def _apply_whatsapp(session: Session, event, payload: Any, context: Context) -> None:
    source = context.sources.get(event.source)
    apply_notification(session, payload, event.provider, event.source,
                       fetch_media=source is not None and source.media is not None)


def _apply_generic(session: Session, event, payload: Any, context: Context) -> None:
    # once per stored event: a replay or a redelivered task does not announce it twice
    events.record_once(session, events.WEBHOOK_RECEIVED, identity=str(event.id), data={
        "id": event.id, "source": event.source, "event_key": event.event_key,
        "type": event.event_type, "trust": event.trust,
        "received_at": event.received_at.isoformat(), "payload": payload})


@dataclasses.dataclass(frozen=True)
class Handler:
    # (provider, stored body) -> the payload, or PayloadError
    read: Callable[[str, bytes], Any]
    # (session, the claimed event, payload, what handlers may use)
    apply: Callable[[Session, Any, Any, Context], None]


HANDLERS: dict[str, Handler] = {
    "payment": Handler(_read_json, _apply_payment),
    "whatsapp": Handler(_read_whatsapp, _apply_whatsapp),
    "generic": Handler(_read_json, _apply_generic),
}


def read_payload(kind: str, provider: str, body: bytes) -> Any:
    """A stored body as its kind's handler reads it."""
    return HANDLERS[kind].read(provider, body)


def link_pending(session: Session, batch: int = 500) -> int:
    """Link the bodies the worker has not processed yet (waiting, failed, dead, or
    stored before links existed) to the people they name, in committed batches; how
    many. Processing links each body as it goes, so this is the short tail."""
    linked, after = 0, 0
    while True:
        rows = session.execute(
            select(WebhookEvent.id, WebhookEvent.kind, WebhookEvent.provider,
                   WebhookEvent.body)
            .where(WebhookEvent.subjects_linked.is_(False), WebhookEvent.id > after)
            .order_by(WebhookEvent.id).limit(batch)).all()
        if not rows:
            return linked
        for event_id, kind, provider, body in rows:
            if body is not None:
                try:
                    payload = read_payload(kind, provider, body)
                except (PayloadError, ValueError):  # a body no reader takes names nobody
                    payload = None
                subjects.link(session, subjects.WEBHOOK_EVENT, event_id,
                              subjects.indexes(payload))
        session.execute(update(WebhookEvent).where(WebhookEvent.id.in_([r[0] for r in rows]))
                        .values(subjects_linked=True))
        session.commit()
        linked += len(rows)
        after = rows[-1][0]


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

"""Store one verified delivery: work out its key, store it once with its outbox row."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from webhooks.db import insert_unless_exists, utcnow
from webhooks.models import RECEIVED, WebhookEvent
from webhooks.outbox import enqueue_now
from webhooks.sources import Source

PROCESS_TASK = "sluice.webhooks.process_event"
MAX_EVENT_KEY = 255
# Kept for debugging and replay; signatures are deliberately not stored.
KEPT_HEADERS = ("Content-Type", "User-Agent", "webhook-id", "webhook-timestamp")


class InvalidPayload(ValueError):
    code = "invalid_payload"


@dataclasses.dataclass(frozen=True)
class Stored:
    event_id: int
    duplicate: bool


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def event_key(source: Source, headers: Mapping[str, str], body: bytes, payload: Any) -> str:
    if source.scheme == "stripe":
        key = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(key, str) or not key:
            raise InvalidPayload("a Stripe event must be a JSON object with a string id")
    elif source.scheme == "standard":
        key = headers.get("webhook-id")
    elif source.scheme == "hmac-sha256" and source.event_key_header:
        key = headers.get(source.event_key_header) or _body_hash(body)
    else:  # meta and paystack resend identical bodies: the body is the identity
        key = _body_hash(body)
    if len(key) > MAX_EVENT_KEY:
        raise InvalidPayload(f"the event id is longer than {MAX_EVENT_KEY} characters")
    return key


def _body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def event_type(source: Source, payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    value = payload.get("event") if source.scheme == "paystack" else payload.get("type")
    if source.kind == "whatsapp":
        value = payload.get("object")
    return value[:100] if isinstance(value, str) else None


def store(session: Session, source: Source, headers: Mapping[str, str], body: bytes) -> Stored:
    """Store a verified delivery once, with its outbox row; the caller commits.

    The UNIQUE (source, event_key) constraint decides duplicates, so concurrent
    deliveries of one event store exactly one row and enqueue exactly one task.
    Raises InvalidPayload.
    """
    payload = parse_json(body)
    key = event_key(source, headers, body, payload)
    now_utc = utcnow()
    values = dict(
        source=source.name, event_key=key, kind=source.kind, provider=source.provider,
        event_type=event_type(source, payload), body=body, received_at=now_utc,
        enqueued_at=now_utc,
        headers={name: headers[name] for name in KEPT_HEADERS if name in headers},
        status=RECEIVED, attempts=0)
    event_id = insert_unless_exists(session, WebhookEvent, values, ["source", "event_key"])
    if event_id is None:
        existing = session.scalar(select(WebhookEvent.id).where(
            WebhookEvent.source == source.name, WebhookEvent.event_key == key))
        return Stored(existing, duplicate=True)
    enqueue_now(session, PROCESS_TASK, {"event_id": event_id}, queue="webhooks")
    return Stored(event_id, duplicate=False)

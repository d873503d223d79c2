"""Store one verified delivery: work out its key, store it once with its outbox row."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from store.db import core_connection, utcnow
from store.outbox import insert_with_message
from store.payloads import free_text
from store.task_names import PROCESS_EVENT
from webhooks.models import RECEIVED, WebhookEvent
from webhooks.schemes import SCHEMES, InvalidPayload
from webhooks.sources import Source

__all__ = ["InvalidPayload", "KEPT_HEADERS", "Stored", "parse_json", "store_delivery"]

# Kept for debugging and replay; signatures are deliberately not stored.
KEPT_HEADERS = ("Content-Type", "User-Agent", "webhook-id", "webhook-timestamp")


@dataclasses.dataclass(frozen=True)
class Stored:
    event_id: int
    duplicate: bool


def parse_json(body: bytes) -> Any:
    """The stored body as JSON for the handler; None if it is not (bodies stored
    before ingest refused non-JSON)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def store_delivery(bind: Engine | Connection, source: Source, headers: Mapping[str, str],
                   body: bytes) -> Stored:
    """Store a verified delivery once, with its outbox row: committed on return when
    given an Engine, in its transaction when given a Connection.

    The UNIQUE (source, event_key) constraint decides duplicates, so concurrent
    deliveries of one event store exactly one row and enqueue exactly one task.
    Raises InvalidPayload.
    """
    scheme = SCHEMES[source.scheme]
    payload = scheme.parse_payload(body)
    key = scheme.event_key(source, headers, body, payload)
    now_utc = utcnow()
    values = dict(
        source=source.name, event_key=key, kind=source.kind, provider=source.provider,
        event_type=scheme.event_type(headers, payload), trust=scheme.trust, body=body,
        received_at=now_utc, enqueued_at=now_utc,
        headers={name: free_text(headers[name], 1000) for name in KEPT_HEADERS
                 if headers.get(name)},
        status=RECEIVED, attempts=0)
    event_id = insert_with_message(bind, WebhookEvent, values, ["source", "event_key"],
                                   PROCESS_EVENT, "event_id")
    if event_id is None:
        with core_connection(bind, autocommit=True) as connection:
            existing = connection.scalar(select(WebhookEvent.id).where(
                WebhookEvent.source == source.name, WebhookEvent.event_key == key))
        return Stored(existing, duplicate=True)
    return Stored(event_id, duplicate=False)

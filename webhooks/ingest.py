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
from webhooks.models import RECEIVED, WebhookEvent, WebhookEventKey
from webhooks.schemes import SCHEMES, InvalidPayload
from webhooks.sources import Source

__all__ = ["InvalidPayload", "KEPT_HEADERS", "Stored", "event_values", "parse_json",
           "store_batch", "store_delivery"]

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

    The key's claim (webhooks/models.py WebhookEventKey) decides duplicates, so concurrent
    deliveries of one event store exactly one row and enqueue exactly one task.
    Raises InvalidPayload.
    """
    return store_event(bind, event_values(source, headers, body))


def store_batch(bind: Engine | Connection, rows: list[dict[str, Any]]) -> list[Stored]:
    """Store the events of one batch delivery (each row from `event_values`), all in
    one transaction: committed on return, or none of them."""
    if len(rows) == 1:  # the common case keeps its one-statement autocommit path
        return [store_event(bind, rows[0])]
    with core_connection(bind, autocommit=False) as connection:
        return [store_event(connection, values) for values in rows]


def event_values(source: Source, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The row a verified delivery is stored as; InvalidPayload if it can never be."""
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
    return values


def store_event(bind: Engine | Connection, values: dict[str, Any]) -> Stored:
    event_id = insert_with_message(bind, WebhookEvent, values, WebhookEventKey.__table__,
                                   "event_id", PROCESS_EVENT, "event_id")
    if event_id is None:
        with core_connection(bind, autocommit=True) as connection:
            existing = connection.scalar(select(WebhookEventKey.event_id).where(
                WebhookEventKey.source == values["source"],
                WebhookEventKey.event_key == values["event_key"]))
        return Stored(existing, duplicate=True)
    return Stored(event_id, duplicate=False)

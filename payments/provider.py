"""What a payment provider module declares, and helpers its event reader uses.

A provider module (payments/providers/<name>.py) holds everything Sluice knows
about one provider: how to read its webhook events, how its statuses map onto the
ledger's, where its status API answers for reconciliation, and which settings
hold that API's base URL and key. `payments/providers/__init__.py` lists them.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Callable

from payments.ledger import PaymentUpdate
from store.payloads import PayloadError, identifier, int64

# payload, provider name (a source may rename it), when it was received
EventReader = Callable[[Any, str, dt.datetime], "PaymentUpdate | None"]


@dataclasses.dataclass(frozen=True)
class Provider:
    name: str
    read_event: EventReader            # None for event types we do not act on
    status_path: str                   # status API path, with {reference}
    read_status: Callable[[Any], str | None]  # the status API's JSON -> a ledger status
    api_base_setting: str              # settings: the API's base URL ...
    default_api_base: str
    api_key_setting: str               # ... and its secret key (environment only)


def json_object(payload: Any, *path: str) -> dict:
    """The JSON object at `path`, or PayloadError."""
    node = payload
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise PayloadError(f"missing object {'.'.join(path) or 'at the top level'}")
    return node


def text(value: Any, limit: int = 255) -> str | None:
    """An identifier (reference, event id) exactly as sent, or None if it cannot be one."""
    return identifier(value, limit)


def currency(value: Any) -> str | None:
    return identifier(value, 10)


def amount(value: Any) -> int | None:
    """Minor units that fit the ledger's BIGINT; None for anything else."""
    return int64(value)

"""Reading untrusted payloads: the shared verdict for data that can never be handled.

A signature proves who sent a payload, not that its contents are sane. Readers in
every package turn what they cannot use into a PayloadError, which the task layer
treats as final: the event is parked as dead at once, never retried in a loop.
"""
from __future__ import annotations

import datetime as dt
from typing import Any


class PayloadError(ValueError):
    """The payload can never be handled: retrying will not help."""


def parse_instant(value: Any) -> dt.datetime | None:
    """A UNIX timestamp or an ISO 8601 string as an aware UTC datetime; else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10 ** 11:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return None

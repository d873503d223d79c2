"""Reading untrusted payloads: what may be stored, and the verdict for what never can.

A signature proves who sent a payload, not that its contents are sane. Text from a
payload reaches PostgreSQL only through these helpers, because PostgreSQL refuses a
NUL (0x00) in `text` and JSONB, and no UTF-8 column can hold a lone surrogate
(which `json.loads` happily produces from "\\ud800"). Either would turn a sender's
bad data into a database error: a 500 at ingest, or a retry loop in the worker.

- Identifiers (event ids, references, wamids, currencies, types) must be clean
  as sent: printable, within their column's length. Anything else is not that
  identifier, and the caller decides what that means (400, PayloadError, None).
- Free text (message bodies, names, captions, filenames) is kept with NUL, other
  C0 controls but tab and newline, and lone surrogates replaced by U+FFFD, and
  clipped to its column.

A PayloadError means the data can never be handled: the task layer parks the event
as dead at once, and never retries it.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

INT64_MAX = 2 ** 63 - 1
INF = float("inf")
REPLACEMENT = "\ufffd"
# C0 and C1 controls, DEL, and the surrogate range: never part of an identifier.
_NOT_IDENTIFIER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What free text may not keep: NUL and the C0 controls other than tab, LF and CR,
# and lone surrogates.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


class PayloadError(ValueError):
    """The payload can never be handled: retrying will not help.

    Its message is ours, written without payload values, so it may be stored and
    logged (see `describe_error`)."""


def identifier(value: Any, limit: int = 255) -> str | None:
    """`value` if it is a non-empty string that can be stored and shown as sent."""
    if isinstance(value, str) and 0 < len(value) <= limit \
            and not _NOT_IDENTIFIER.search(value):
        return value
    return None


def free_text(value: Any, limit: int) -> str | None:
    """A string, made storable and clipped to `limit`; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    return _NOT_TEXT.sub(REPLACEMENT, value[:limit])


def storable_json(value: Any, depth: int = 20) -> Any:
    """A JSON value whose strings (keys too) are all storable; too deep becomes None."""
    if depth <= 0:
        return None
    if isinstance(value, str):
        return _NOT_TEXT.sub(REPLACEMENT, value)
    if isinstance(value, list):
        return [storable_json(item, depth - 1) for item in value]
    if isinstance(value, dict):
        return {_NOT_TEXT.sub(REPLACEMENT, str(key)): storable_json(item, depth - 1)
                for key, item in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
        return None  # JSONB takes it, but nothing reading it back expects it
    if isinstance(value, float) and (value != value or value in (INF, -INF)):
        return None  # NaN and infinities are not JSON
    return value


def int64(value: Any) -> int | None:
    """An integer that fits a BIGINT column; None for anything else (bools included)."""
    if isinstance(value, int) and not isinstance(value, bool) and -INT64_MAX <= value <= INT64_MAX:
        return value
    return None


def parse_instant(value: Any) -> dt.datetime | None:
    """A UNIX timestamp or an ISO 8601 string as an aware UTC datetime; else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10 ** 11:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        try:
            return (parsed.astimezone(dt.timezone.utc) if parsed.tzinfo
                    else parsed.replace(tzinfo=dt.timezone.utc))
        except (OverflowError, ValueError):  # year 1 or 9999 pushed past the range
            return None
    return None


def describe_error(error: BaseException) -> str:
    """What may be kept about an error (last_error columns, logs): its type, and its
    message only when we wrote it. A database error's text quotes the statement and
    the server's detail, and an arbitrary exception may quote the data it choked on;
    either can carry a customer's name, phone number or email."""
    if isinstance(error, PayloadError):
        return f"{type(error).__name__}: {error}"[:1000]
    original = getattr(error, "orig", None)  # SQLAlchemy's wrapper around a DBAPI error
    if original is not None:
        state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        return f"{type(error).__name__} ({type(original).__name__}" \
               f"{', SQLSTATE ' + state if state else ''})"
    return type(error).__name__


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def parse_size(value: Any) -> int:
    """A size a setting gives: bytes as a number, or "4MB"; ValueError names a bad one."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(str(value))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"not a size: {value!r} (say e.g. 4MB)")
    return int(match.group(1)) * _UNITS[match.group(2) and match.group(2).upper()]

"""Query-string arguments, validated into a 400 with the error envelope."""
from __future__ import annotations

import re

from flask import request

from webapp.errors import APIError


def int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise APIError(400, "invalid_parameter", f"{name} must be an integer {low}..{high}.")
    return int(raw)


# NUL and other control characters are never part of a real name, and PostgreSQL
# refuses NUL in text outright (a 500 instead of a 400).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(value: str, max_length: int) -> bool:
    """At most `max_length` characters, none of them a control character."""
    return len(value) <= max_length and not _CONTROL.search(value)


def text_arg(name: str, max_length: int) -> str | None:
    value = request.args.get(name)
    if value is not None and not printable(value, max_length):
        raise APIError(400, "invalid_parameter",
                       f"{name} must be at most {max_length} printable characters.")
    return value


def choice_arg(name: str, choices: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value is not None and value not in choices:
        raise APIError(400, "invalid_parameter", f"{name} must be one of {', '.join(choices)}.")
    return value

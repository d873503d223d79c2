"""Times and sizes as a person reads them: one form for the console and the CLI."""
from __future__ import annotations

import datetime as dt


def when(value, seconds: bool = True) -> str:
    """A datetime, unix seconds or an ISO string (the API's import progress), in UTC."""
    if value is None or value == "":
        return "-"
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    elif isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def size(value: int) -> str:
    """Bytes: 4194304 is 4 MiB."""
    for unit, factor in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if value >= factor:
            amount = value / factor
            return f"{amount:.0f} {unit}" if amount == int(amount) else f"{amount:.1f} {unit}"
    return f"{value} B"

"""The Celery beat schedule, built from config."""
from __future__ import annotations

import datetime as dt
from typing import Any


def build_beat_schedule(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    relay_every = config["OUTBOX_RELAY_INTERVAL"]
    return {
        "relay-outbox": {
            "task": "sluice.cron.relay_outbox",
            "schedule": dt.timedelta(seconds=relay_every),
            # A run that waited longer than its interval is stale: drop it.
            "options": {"queue": "cron", "expires": max(relay_every - 1, 1)},
        },
    }

"""dispatch_deliveries: the safety net for the workers' dispatcher (tasks/relay.py),
for when no worker runs one (OUTBOX_POLL_INTERVAL or DELIVERY_POLL_INTERVAL 0)."""
from __future__ import annotations

import dataclasses

from cron.runner import JobContext
from deliveries.dispatch import DispatchSettings, dispatch


def dispatch_deliveries(ctx: JobContext) -> dict:
    ctx.check()
    return dataclasses.asdict(dispatch(ctx.session, DispatchSettings.from_config(ctx.config)))

"""relay_outbox: the safety net that publishes outbox rows no worker's relay took
(older than OUTBOX_RELAY_AFTER): workers all down, or their relays stuck."""
from __future__ import annotations

import datetime as dt

from cron.runner import JobContext
from store.publishing import publish_pending


def relay_outbox(ctx: JobContext) -> dict:
    if ctx.publisher is None:
        raise RuntimeError("relay_outbox needs a publisher")
    total = {"published": 0, "failed": 0}
    while True:  # batches until the backlog is empty or the broker refuses
        ctx.check()
        result = publish_pending(
            ctx.session, ctx.publisher,
            older_than=dt.timedelta(seconds=ctx.config["OUTBOX_RELAY_AFTER"]),
            batch_size=ctx.config["OUTBOX_RELAY_BATCH"])
        total["published"] += result.published
        total["failed"] += result.failed
        if result.failed or result.published < ctx.config["OUTBOX_RELAY_BATCH"]:
            return total

"""redrive_stuck_events: re-enqueue events accepted but never processed."""
from __future__ import annotations

import datetime as dt

from prometheus_client import Counter
from sqlalchemy import select, update

from cron.runner import JobContext
from store.db import utcnow
from store.outbox import enqueue
from store.task_names import PROCESS_EVENT
from webhooks.models import RECEIVED, WebhookEvent

REDRIVEN = Counter("sluice_webhook_events_redriven_total",
                   "Accepted events re-enqueued because they were not processed in time")


def redrive_stuck_events(ctx: JobContext) -> dict:
    """A message lost with a broker leaves its event `received`: hand it out again."""
    cutoff = utcnow() - dt.timedelta(seconds=ctx.config["REDRIVE_AFTER"])
    redriven = 0
    while True:
        ctx.check()
        ids = list(ctx.session.scalars(
            select(WebhookEvent.id)
            .where(WebhookEvent.status == RECEIVED, WebhookEvent.enqueued_at < cutoff)
            .order_by(WebhookEvent.id).limit(500).with_for_update(skip_locked=True)))
        if not ids:
            break
        ctx.session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(ids))
                            .values(enqueued_at=utcnow()))
        for event_id in ids:
            enqueue(ctx.session, PROCESS_EVENT, {"event_id": event_id})
        ctx.session.commit()
        redriven += len(ids)
    REDRIVEN.inc(redriven)
    return {"redriven": redriven}

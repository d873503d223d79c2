"""The scheduled jobs and their registry."""
from __future__ import annotations

import datetime as dt
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select, update

from cron.rescan import rescan_documents
from cron.retention import purge_retention
from cron.runner import Job, JobContext
from webhooks.db import utcnow
from webhooks.ingest import PROCESS_TASK
from webhooks.models import RECEIVED, WebhookEvent
from webhooks.outbox import enqueue, relay_unpublished

REDRIVEN = Counter("sluice_webhook_events_redriven_total",
                   "Accepted events re-enqueued because they were not processed in time")


def relay_outbox(ctx: JobContext) -> dict:
    if ctx.publisher is None:
        raise RuntimeError("relay_outbox needs a publisher")
    total = {"published": 0, "failed": 0}
    while True:  # batches until the backlog is empty or the broker refuses
        ctx.check()
        result = relay_unpublished(
            ctx.session, ctx.publisher,
            older_than=dt.timedelta(seconds=ctx.config["OUTBOX_RELAY_AFTER"]),
            batch_size=ctx.config["OUTBOX_RELAY_BATCH"])
        total["published"] += result.published
        total["failed"] += result.failed
        if result.failed or result.published < ctx.config["OUTBOX_RELAY_BATCH"]:
            return total


def redrive_stuck_events(ctx: JobContext) -> dict:
    """Re-enqueue events accepted but never processed (a message lost with a broker)."""
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
            enqueue(ctx.session, PROCESS_TASK, {"event_id": event_id}, queue="webhooks")
        ctx.session.commit()
        redriven += len(ids)
    REDRIVEN.inc(redriven)
    return {"redriven": redriven}


def _reconcile(ctx: JobContext) -> dict:
    # Imported here: the web process builds this registry (beat schedule, admin API)
    # but never runs a job, and the provider API clients bring requests and pybreaker,
    # about 4 MB of each web worker's RSS.
    from cron.reconcile import reconcile_payments, status_clients

    return reconcile_payments(ctx, status_clients(ctx.config, ctx.redis))


def registry(config: dict[str, Any]) -> dict[str, Job]:
    """Every job with its interval and limits; CRON_DISABLED (comma list) turns some off."""
    relay_every = config["OUTBOX_RELAY_INTERVAL"]
    jobs = [
        Job("relay_outbox", relay_outbox, interval=relay_every,
            soft_time_limit=max(relay_every * 3, 30), time_limit=max(relay_every * 3, 30) + 15),
        Job("redrive_stuck_events", redrive_stuck_events, interval=config["REDRIVE_INTERVAL"],
            soft_time_limit=120, time_limit=150),
        Job("reconcile_payments", _reconcile, interval=config["RECONCILE_INTERVAL"],
            soft_time_limit=240, time_limit=280),
        Job("rescan_documents", rescan_documents, interval=config["RESCAN_INTERVAL"],
            soft_time_limit=600, time_limit=660),
        Job("purge_retention", purge_retention, interval=24 * 3600,
            soft_time_limit=1200, time_limit=1260),
    ]
    disabled = {name.strip() for name in config.get("CRON_DISABLED", "").split(",")}
    return {job.name: job for job in jobs if job.name not in disabled}

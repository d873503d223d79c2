"""purge_retention: drop what we promised not to keep, never the record that it happened."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from sqlalchemy import delete, select, update

from cron.models import JobRun
from cron.runner import JobContext
from store.db import utcnow
from webhooks.models import DEAD, PROCESSED, WebhookEvent
from store.outbox import OutboxMessage

BATCH = 1000
TEMP_FILE_MAX_AGE = 24 * 3600


def purge_retention(ctx: JobContext) -> dict:
    now, days = utcnow(), dt.timedelta(days=1)
    config = ctx.config
    bodies = _in_batches(ctx, lambda: select(WebhookEvent.id).where(
        WebhookEvent.body.is_not(None), WebhookEvent.status.in_((PROCESSED, DEAD)),
        WebhookEvent.received_at < now - config["RETENTION_WEBHOOK_BODY_DAYS"] * days),
        lambda ids: update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(body=None))
    runs = _in_batches(ctx, lambda: select(JobRun.id).where(
        JobRun.started_at < now - config["RETENTION_JOB_RUNS_DAYS"] * days),
        lambda ids: delete(JobRun).where(JobRun.id.in_(ids)))
    outbox = _in_batches(ctx, lambda: select(OutboxMessage.id).where(
        OutboxMessage.published_at < now - config["RETENTION_OUTBOX_DAYS"] * days),
        lambda ids: delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
    return {"webhook_bodies_dropped": bodies, "job_runs_deleted": runs,
            "outbox_rows_deleted": outbox, "temp_files_removed": _old_temp_files(config)}


def _in_batches(ctx: JobContext, ids_query, statement) -> int:
    total = 0
    while True:
        ctx.check()
        ids = list(ctx.session.scalars(ids_query().limit(BATCH)))
        if not ids:
            return total
        ctx.session.execute(statement(ids))
        ctx.session.commit()
        total += len(ids)


def _old_temp_files(config) -> int:
    # Uploads stream into STORAGE_DIR/tmp; one left there a day is an abandoned upload.
    removed, cutoff = 0, time.time() - TEMP_FILE_MAX_AGE
    for path in Path(config["STORAGE_DIR"], "tmp").glob("*"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed

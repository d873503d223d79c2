"""redrive_stuck_work: hand out again the work whose message was lost.

Every asynchronous state has its row in the database, and the row says when its
work was last handed out (`enqueued_at`). A message can still be lost: a worker
group SIGKILLed holds its messages in Redis's `unacked` set for the visibility
timeout, and a Redis restart then drops them; a flushed broker drops the rest. So
each state below that is older than its threshold is queued again, through the
outbox, counted per kind (the job's run detail on the console, and
sluice_redriven_total), with `enqueued_at` reset so it waits a full threshold
before the next try. Every task is idempotent, so a redrive of work that was only
slow costs a repeat, never a second effect.

Adding a kind is one `Redrive(...)` line in REDRIVES.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from prometheus_client import Counter
from sqlalchemy import select, update

from cron.runner import JobContext
from documents.models import (
    PENDING_SCAN,
    QUEUED,
    RUNNING,
    UPLOAD_PROCESSING,
    Document,
    Import,
    Upload,
)
from documents.text import PENDING as TEXT_PENDING
from store.db import utcnow
from store.outbox import enqueue
from store.task_names import (
    EXTRACT_TEXT,
    FETCH_MEDIA,
    INGEST_UPLOAD,
    PROCESS_EVENT,
    RUN_IMPORT,
    SCAN_DOCUMENT,
)
from webhooks.models import RECEIVED, WebhookEvent
from whatsapp.models import MEDIA_PENDING, WhatsAppMedia

REDRIVEN = Counter("sluice_redriven_total",
                   "Work queued again because it was not done in time", ["kind"])
BATCH = 500


@dataclasses.dataclass(frozen=True)
class Redrive:
    kind: str
    model: type
    states: tuple[str, ...]
    task_name: str
    argument: str      # the task's keyword argument that names the row
    after: str         # the setting: seconds since enqueued_at before it is redriven
    needs: str | None = None  # a setting that must be set for the work to be possible
    status: str = "status"    # the column `states` are of


REDRIVES = (
    Redrive("webhook_events", WebhookEvent, (RECEIVED,), PROCESS_EVENT, "event_id",
            "REDRIVE_AFTER"),
    Redrive("scans", Document, (PENDING_SCAN,), SCAN_DOCUMENT, "document_id",
            "REDRIVE_AFTER", needs="CLAMD_URL"),  # no scanner: they wait, the overview says
    Redrive("direct_uploads", Upload, (UPLOAD_PROCESSING,), INGEST_UPLOAD, "upload_id",
            "REDRIVE_AFTER"),
    Redrive("media_fetches", WhatsAppMedia, (MEDIA_PENDING,), FETCH_MEDIA, "media_id",
            "REDRIVE_MEDIA_AFTER"),
    Redrive("imports", Import, (QUEUED, RUNNING), RUN_IMPORT, "import_id",
            "REDRIVE_IMPORT_AFTER"),
    Redrive("text_readings", Document, (TEXT_PENDING,), EXTRACT_TEXT, "document_id",
            "REDRIVE_TEXT_AFTER", status="text_status"),
)


def redrive_stuck_work(ctx: JobContext) -> dict:
    return {f"{redrive.kind}_redriven": _redrive(ctx, redrive) for redrive in REDRIVES
            if redrive.needs is None or ctx.config.get(redrive.needs)}


def _redrive(ctx: JobContext, redrive: Redrive) -> int:
    model = redrive.model
    cutoff = utcnow() - dt.timedelta(seconds=ctx.config[redrive.after])
    total = 0
    while True:
        ctx.check()
        ids = list(ctx.session.scalars(
            select(model.id)
            .where(getattr(model, redrive.status).in_(redrive.states),
                   model.enqueued_at < cutoff)
            .order_by(model.id).limit(BATCH).with_for_update(skip_locked=True)))
        if not ids:
            break
        ctx.session.execute(update(model).where(model.id.in_(ids)).values(enqueued_at=utcnow()))
        for row_id in ids:
            enqueue(ctx.session, redrive.task_name, {redrive.argument: row_id})
        ctx.session.commit()
        total += len(ids)
    REDRIVEN.labels(redrive.kind).inc(total)
    return total

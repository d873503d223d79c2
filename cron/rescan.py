"""rescan_documents: rescan what an older signature database called clean, what could
not be scanned, and what has waited too long for its first scan."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select

from cron.runner import JobContext
from documents.models import CLEAN, SCAN_ERROR, Document
from documents.operations import rescan_pending
from documents.scanner import client_from_url
from documents.scanning import signatures_fingerprint
from store.outbox import enqueue
from store.task_names import SCAN_DOCUMENT

BATCH = 500
PENDING_CAP = 10_000  # stuck pending documents queued per run; the next run takes more


def rescan_documents(ctx: JobContext) -> dict:
    """Queue a scan for clean documents from an older database, for scan errors, and
    for documents pending past REDRIVE_AFTER (uploaded while no scanner existed, or
    whose scan message a dead worker or a flushed broker lost).

    The scan task itself records the new verdict: a file the new signatures
    detect becomes `infected` and its blob is quarantined.
    """
    url = ctx.config.get("CLAMD_URL")
    if not url:
        return {"queued": 0, "skipped": "no CLAMD_URL"}
    current = signatures_fingerprint(client_from_url(url, timeout=10).version())
    pending = rescan_pending(ctx.session, dt.timedelta(seconds=ctx.config["REDRIVE_AFTER"]),
                             PENDING_CAP, "job:rescan_documents")
    ctx.session.commit()
    queued, after_id = pending, 0
    while True:
        ctx.check()
        ids = list(ctx.session.scalars(
            select(Document.id)
            .where(Document.id > after_id, or_(
                Document.status == SCAN_ERROR,
                (Document.status == CLEAN) & (Document.signatures_fingerprint != current)))
            .order_by(Document.id).limit(BATCH)))
        if not ids:
            return {"queued": queued, "pending": pending, "fingerprint": current}
        for document_id in ids:
            enqueue(ctx.session, SCAN_DOCUMENT, {"document_id": document_id})
        ctx.session.commit()
        queued, after_id = queued + len(ids), ids[-1]

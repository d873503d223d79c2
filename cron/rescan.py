"""rescan_documents: rescan what an older signature database called clean, and what
could not be scanned. (Documents still waiting for a first scan are the redrive job's:
cron/redrive.py.)"""
from __future__ import annotations

from sqlalchemy import or_, select

from cron.runner import JobContext
from documents.models import CLEAN, SCAN_ERROR, Document
from documents.scanner import client_from_url
from documents.scanning import signatures_fingerprint
from store.outbox import enqueue
from store.task_names import SCAN_DOCUMENT

BATCH = 500


def rescan_documents(ctx: JobContext) -> dict:
    """Queue a scan for clean documents from an older database, and for scan errors.

    The scan task itself records the new verdict: a file the new signatures
    detect becomes `infected` and its blob is quarantined.
    """
    url = ctx.config.get("CLAMD_URL")
    if not url:
        return {"queued": 0, "skipped": "no CLAMD_URL"}
    current = signatures_fingerprint(client_from_url(url, timeout=10).version())
    queued, after_id = 0, 0
    while True:
        ctx.check()
        ids = list(ctx.session.scalars(
            select(Document.id)
            .where(Document.id > after_id, or_(
                Document.status == SCAN_ERROR,
                (Document.status == CLEAN) & (Document.signatures_fingerprint != current)))
            .order_by(Document.id).limit(BATCH)))
        if not ids:
            return {"queued": queued, "fingerprint": current}
        for document_id in ids:
            enqueue(ctx.session, SCAN_DOCUMENT, {"document_id": document_id})
        ctx.session.commit()
        queued, after_id = queued + len(ids), ids[-1]

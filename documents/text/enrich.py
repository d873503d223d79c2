"""The `extract_text` work: read a clean document's text and preview, index them; and
what undoes it (an infected verdict, a deletion).

A document turning clean queues it (documents/scanning.py, through the outbox, on the
`enrich` queue of its own, so OCR's CPU never delays a scan or a webhook). A rescan
that stays clean queues nothing: its text is already there.

No transaction stays open while the sandbox reads (an OCR can take minutes, and on
SQLite a transaction holds the one write lock); the document is read again after it,
and the text is kept only if it is still clean.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from documents.models import CLEAN, Document
from documents.storage import BlobStorage
from documents.text import FAILED, PENDING, index, sandbox
from store.db import utcnow
from store.outbox import enqueue
from store.task_names import EXTRACT_TEXT

log = logging.getLogger(__name__)


def queue(session: Session, document: Document) -> None:
    """Ask for the document's text, once: a document that has a text state keeps it."""
    if document.text_status is None:
        document.text_status = PENDING
        document.enqueued_at = utcnow()  # the redrive job's clock, as for its scan
        enqueue(session, EXTRACT_TEXT, {"document_id": document.id})


def queue_missing(session: Session, limit: int) -> int:
    """Queue every clean document that has never been read (those stored before text
    extraction existed), up to `limit`; how many. The caller commits."""
    documents = list(session.scalars(select(Document).where(
        Document.status == CLEAN, Document.text_status.is_(None))
        .order_by(Document.id).limit(limit)))
    for document in documents:
        queue(session, document)
    return len(documents)


def extract(session: Session, storage: BlobStorage, document_id: int,
            limits: sandbox.Limits) -> str | None:
    """Read, index and record; the new text status (None: nothing to do). Raises what
    the store or the database raise, for the task to retry. The caller commits."""
    document = session.get(Document, document_id)
    if document is None or document.status != CLEAN or document.text_status != PENDING:
        return None
    sha256, content_type = document.sha256, document.mime_type
    session.commit()
    with tempfile.TemporaryDirectory(dir=_spool(storage)) as tmp, \
            storage.local_copy(sha256) as path:
        preview = Path(tmp) / "preview.png"
        result = sandbox.run(path, content_type, limits, preview)
        if result.preview and preview.is_file():
            storage.put_preview(preview, sha256)
    document = session.scalar(select(Document).where(Document.id == document_id)
                              .with_for_update())
    if document is None or document.status != CLEAN:
        # deleted, or found infected, while it was read: keep nothing of it (the preview
        # belongs to the bytes, which a quarantine or a deletion has taken)
        if document is not None or not _bytes_still_served(session, sha256):
            storage.delete_preview(sha256)
        return None
    index.store(session, document.id, _indexed_name(document), result.text,
                index.text_search_config(limits.languages))
    document.text_status = result.status
    document.text_reason = result.reason
    document.text_characters = len(result.text)
    document.text_pages_ocr = result.pages_ocr
    document.text_ms = round(result.seconds * 1000)
    document.has_preview = result.preview
    log.info("document text read", extra={
        "document_id": document.id, "text_status": result.status, "reason": result.reason,
        "characters": len(result.text), "pages_ocr": result.pages_ocr,
        "ms": document.text_ms})
    return result.status


def give_up(session: Session, document_id: int) -> None:
    """The store or the database stayed away through every retry: `failed`."""
    session.execute(update(Document).where(Document.id == document_id,
                                           Document.text_status == PENDING)
                    .values(text_status=FAILED, text_reason="retries_spent"))


def undo(session: Session, documents: list[Document]) -> None:
    """Forget the documents' text (an infected verdict). Their preview goes with their
    bytes (the store's quarantine). The caller commits."""
    index.forget(session, [document.id for document in documents])
    for document in documents:
        document.text_status = document.text_reason = None
        document.text_characters = document.text_pages_ocr = document.text_ms = None
        document.has_preview = False


def _indexed_name(document: Document) -> str:
    return " ".join(part for part in (document.filename, document.title) if part)


def _bytes_still_served(session: Session, sha256: str) -> bool:
    return session.scalar(select(Document.id).where(
        Document.sha256 == sha256, Document.status == CLEAN).limit(1)) is not None


def _spool(storage: BlobStorage) -> Path:
    storage.spool_dir.mkdir(parents=True, exist_ok=True)
    return storage.spool_dir

"""Does the store still hold what the rows say? A lost or replaced bucket, a bad
lifecycle rule or an operator's mistake leaves rows pointing at nothing, and every
download of them would fail. This finds such documents, marks them `missing_blob`
(never served: downloads answer 410 `blob_missing`, never a link that 404s), audits
it, and puts them back (`pending_scan`, with a scan queued) when the bytes return.

`verify()` backs `flask storage verify` and the `verify_storage` job, which samples
continuously; a download that finds the bytes gone calls `mark_missing` itself.
"""
from __future__ import annotations

import dataclasses
import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from documents.models import INFECTED, MISSING_BLOB, PENDING_SCAN, Document
from documents.storage import BlobStorage
from store import audit
from store.db import utcnow
from store.outbox import enqueue
from store.task_names import SCAN_DOCUMENT

OK, MISSING, CORRUPT = "ok", "missing", "corrupt"


@dataclasses.dataclass
class Verified:
    checked: int = 0
    ok: int = 0
    missing: int = 0
    corrupt: int = 0
    restored: int = 0
    documents_marked: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def mark_missing(session: Session, sha256: str, actor: str, reason: str) -> list[Document]:
    """Every servable document holding these bytes becomes missing_blob, each audited;
    the caller commits. (Infected documents' bytes are quarantined, not missing.)"""
    documents = session.scalars(select(Document).where(
        Document.sha256 == sha256, Document.status.not_in((INFECTED, MISSING_BLOB)))
        .with_for_update()).all()
    for document in documents:
        audit.record(session, actor, "document.blob_missing", "document", document.id,
                     {"previous_status": document.status, "reason": reason})
        document.status = MISSING_BLOB
    return list(documents)


def _restore(session: Session, sha256: str, actor: str) -> int:
    """The bytes are back and whole: scan them again before anything serves them."""
    documents = session.scalars(select(Document).where(
        Document.sha256 == sha256, Document.status == MISSING_BLOB).with_for_update()).all()
    for document in documents:
        document.status, document.enqueued_at = PENDING_SCAN, utcnow()
        enqueue(session, SCAN_DOCUMENT, {"document_id": document.id})
        audit.record(session, actor, "document.blob_restored", "document", document.id)
    return len(documents)


def check_blob(storage: BlobStorage, sha256: str, size: int, *, quick: bool) -> str:
    """OK, MISSING, or CORRUPT (another size; unless `quick`, another SHA-256)."""
    try:
        if storage.size(sha256) != size:
            return CORRUPT
    except FileNotFoundError:
        return MISSING
    if quick:
        return OK
    digest = hashlib.sha256()
    try:
        with storage.open(sha256) as blob:
            while chunk := blob.read(1024 * 1024):
                digest.update(chunk)
    except FileNotFoundError:  # deleted between the two looks
        return MISSING
    return OK if digest.hexdigest() == sha256 else CORRUPT


def blobs_to_verify(session: Session, *, sample: int | None = None,
                    after: str = "", limit: int = 500) -> list[tuple[str, int]]:
    """(sha256, size) of the blobs documents need, missing ones included: in hash order
    after `after`, or `sample` of them at random."""
    query = (select(Document.sha256, func.max(Document.size))
             .where(Document.status != INFECTED).group_by(Document.sha256))
    if sample is not None:
        return list(session.execute(query.order_by(func.random()).limit(sample)).all())
    return list(session.execute(query.where(Document.sha256 > after)
                                .order_by(Document.sha256).limit(limit)).all())


def verify(session: Session, storage: BlobStorage, blobs: list[tuple[str, int]], *,
           quick: bool, actor: str, result: Verified | None = None) -> Verified:
    """Check each blob, mark or restore its documents, and commit after each blob (the
    store is asked outside any transaction). StorageUnavailable propagates: a store
    that is away says nothing about what it holds."""
    result = result or Verified()
    for sha256, size in blobs:
        session.commit()
        outcome = check_blob(storage, sha256, size, quick=quick)
        result.checked += 1
        if outcome == OK:
            result.ok += 1
            result.restored += _restore(session, sha256, actor)
        else:
            setattr(result, outcome, getattr(result, outcome) + 1)
            result.documents_marked += len(mark_missing(
                session, sha256, actor, f"verify: {outcome}"))
        session.commit()
    return result

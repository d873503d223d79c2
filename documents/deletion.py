"""Owners delete what they sent: a document, or an import (and, if asked, its documents).

A deletion removes the rows in the owner's transaction, audited, and makes the rows
that pointed at a deleted document forget it (an import's row, a direct upload, a
WhatsApp media item: each way in registers how, as `origins` does). The bytes go once
no row needs them: `release_blobs` runs after the commit, asks again which of the
hashes a row still needs (another owner's copy of the same bytes, an import's
archive), and deletes the rest from the store. A store that is away then leaves them
to purge_retention's orphan sweep; they are never served meanwhile, as every download
starts from a row.

A pending scan of a deleted document finds no row and does nothing. An infected
document's quarantined bytes stay in quarantine: they are what makes the same bytes
infected at once if anyone sends them again.
"""
from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from documents.models import (
    QUEUED,
    RUNNING,
    Document,
    DocumentTag,
    Import,
    ImportRow,
    Upload,
    referenced_blobs,
)
from documents.storage import BlobStorage, StorageUnavailable
from documents.text import index
from store import audit
from store.db import as_system
from store.holds import documents_held

log = logging.getLogger(__name__)

# (session, deleted document ids) -> None: clear a row's reference to them
Forgetter = Callable[[Session, list[int]], None]
FORGETTERS: list[Forgetter] = []


def register(forget: Forgetter) -> Forgetter:
    FORGETTERS.append(forget)
    return forget


@register
def _imports_and_uploads(session: Session, document_ids: list[int]) -> None:
    for model in (ImportRow, Upload):
        session.execute(update(model).where(model.document_id.in_(document_ids))
                        .values(document_id=None).execution_options(synchronize_session=False))


register(index.forget)  # their text and its search index


class ImportRunning(RuntimeError):
    """An import still queued or running cannot be deleted: its worker writes its rows."""


class UnderHold(RuntimeError):
    """A legal hold covers one of the documents (store/holds.py): nothing is deleted."""

    def __init__(self, document_ids: list[int]):
        super().__init__(f"{len(document_ids)} document(s) under a legal hold")
        self.document_ids = document_ids


def delete_documents(session: Session, documents: list[Document], actor: str) -> set[str]:
    """Delete the documents; the hashes whose blobs may now be unneeded (for
    `release_blobs` after the commit). The caller commits. UnderHold, deleting
    nothing, if a legal hold covers any of them."""
    ids = [document.id for document in documents]
    if not ids:
        return set()
    held = list(session.scalars(select(Document.id).where(
        Document.id.in_(ids), documents_held(Document.id, Document.owner_id))))
    if held:
        raise UnderHold(sorted(held))
    session.execute(delete(DocumentTag).where(DocumentTag.document_id.in_(ids)))
    for forget in FORGETTERS:
        forget(session, ids)
    for document in documents:
        audit.record(session, actor, "document.delete", "document", document.id,
                     {"size": document.size, "mime_type": document.mime_type,
                      "status": document.status})
    session.execute(delete(Document).where(Document.id.in_(ids)))
    return {document.sha256 for document in documents}


def delete_import(session: Session, job: Import, actor: str,
                  with_documents: bool = False) -> set[str]:
    """Delete an import's record and rows, and with `with_documents` the documents its
    rows made (the owner's own: an import only ever makes its owner's). The hashes
    whose blobs may now be unneeded; the caller commits. ImportRunning while it runs."""
    if job.status in (QUEUED, RUNNING):
        raise ImportRunning(job.id)
    hashes = {job.archive_sha256} | ({job.manifest_sha256} if job.manifest_sha256 else set())
    documents = []
    if with_documents:
        documents = list(session.scalars(select(Document).where(
            Document.owner_id == job.owner_id,
            Document.id.in_(select(ImportRow.document_id).where(
                ImportRow.import_id == job.id)))))
    rows = session.execute(delete(ImportRow).where(ImportRow.import_id == job.id)).rowcount
    hashes |= delete_documents(session, documents, actor)
    audit.record(session, actor, "import.delete", "import", job.id,
                 {"rows": rows, "documents_deleted": len(documents)})
    session.delete(job)
    return hashes


def release_blobs(session: Session, storage: BlobStorage, hashes: set[str]) -> int:
    """After a deletion's commit: delete the blobs of `hashes` that no row needs any
    more; how many. Call it outside any transaction you mean to keep."""
    if not hashes:
        return 0
    as_system(session)  # another owner's copy of the bytes counts, whoever deleted this one
    unneeded = hashes - referenced_blobs(session, among=sorted(hashes))
    session.rollback()  # no transaction held while the store works
    removed = 0
    for sha256 in sorted(unneeded):
        try:
            storage.delete(sha256)
            removed += 1
        except StorageUnavailable:
            log.warning("a deleted document's blob stays for the orphan sweep: the store "
                        "is away")
    return removed

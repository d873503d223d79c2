"""Scan a stored document with clamd and record what it said.

A verdict of `infected` belongs to the bytes, not to one owner's row: blobs are
content-addressed and shared, so every document with that SHA-256 becomes
infected in the same transaction, and the blob is quarantined. A `clean` verdict
is recorded for the scanned document only.
"""
from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from documents.blob_audit import mark_missing
from documents.models import CLEAN, INFECTED, SCAN_ERROR, UNSCANNABLE, Document
from documents.origins import origin_of
from documents.scanner import CLEAN as VERDICT_CLEAN
from documents.scanner import INFECTED as VERDICT_INFECTED
from documents.storage import BlobStorage
from documents.text import enrich
from store import audit, events
from store.db import utcnow


class ScanFailed(RuntimeError):
    """clamd could not give a verdict; retry, and never call the file clean."""


def signatures_fingerprint(version: str) -> str:
    """'ClamAV 1.4.6/27830/Sun Nov 22 ...' -> a hash of the database part after the '/'."""
    database = version.partition("/")[2] or version
    return hashlib.sha256(database.encode()).hexdigest()[:16]


def scan_document(session: Session, storage: BlobStorage, scanner, document_id: int,
                  max_bytes: int) -> str | None:
    """Scan and record; returns the new status. Raises ScanFailed when clamd cannot say.

    `max_bytes` must not exceed clamd's StreamMaxLength: a larger file would be cut
    off and could be reported OK, so it is `unscannable` instead.

    The attempt is committed before clamd is asked, and the verdict recorded in a
    transaction of its own (which the caller commits): no transaction stays open
    while the scan runs, since on SQLite it would hold the database's one write lock
    for as long.
    """
    document = session.get(Document, document_id)
    if document is None:
        return None
    document.scan_attempts += 1
    if document.size > max_bytes:
        _verdict(session, document, UNSCANNABLE)
        return document.status
    if storage.is_quarantined(document.sha256):  # the same bytes were found infected
        mark_infected(session, document.sha256, "quarantined")
        return document.status
    sha256 = document.sha256
    session.commit()
    version = scanner.version()
    try:
        with storage.open(sha256) as blob:
            verdict = scanner.scan_stream(blob)
    except FileNotFoundError:  # the store lost the bytes: no scan can ever say clean
        session.rollback()
        mark_missing(session, sha256, "scanner", "the blob was not found for a scan")
        document = session.get(Document, document_id)
        return document.status if document is not None else None
    document = session.get(Document, document_id)
    if document is None:  # deleted while it was scanned
        return None
    if verdict.status == VERDICT_INFECTED:
        # Quarantine first: if the commit fails, the blob is already out of reach,
        # and the retry finds it quarantined and records the verdict.
        storage.quarantine(document.sha256)
        mark_infected(session, document.sha256, verdict.signature, version)
        return document.status
    if verdict.status != VERDICT_CLEAN:
        raise ScanFailed(verdict.detail)
    _record_scanner(document, version)
    _verdict(session, document, CLEAN)
    audit.record(session, "scanner", "document.scanned", "document", document.id,
                 {"status": document.status})
    return document.status


def mark_infected(session: Session, sha256: str, signature: str,
                  version: str | None = None) -> list[Document]:
    """Every document holding these bytes becomes infected, each with an audit entry."""
    documents = session.scalars(select(Document).where(
        Document.sha256 == sha256, Document.status != INFECTED).with_for_update()).all()
    for document in documents:
        document.signature = signature[:255]
        if version is not None:
            _record_scanner(document, version)
        _verdict(session, document, INFECTED)
        audit.record(session, "scanner", "document.infected", "document", document.id,
                     {"signature": document.signature, "owner_id": document.owner_id})
    enrich.undo(session, documents)
    return documents


def _record_scanner(document: Document, version: str) -> None:
    document.scanner_version = version[:255]
    document.signatures_fingerprint = signatures_fingerprint(version)
    document.scanned_at = utcnow()


def give_up(session: Session, document_id: int) -> None:
    document = session.get(Document, document_id)
    if document is not None and document.status not in (CLEAN, INFECTED):
        _verdict(session, document, SCAN_ERROR)


def _verdict(session: Session, document: Document, status: str) -> None:
    """Set the verdict; a `document.scanned` event when it changed (a first verdict, or
    a rescan that says otherwise), in the same transaction."""
    previous, document.status = document.status, status
    if status == CLEAN:
        enrich.queue(session, document)  # its text, once: a rescan that stays clean has it
    if previous != status:
        events.record(session, events.DOCUMENT_SCANNED,
                      {**document_event_json(document), "previous_status": previous,
                       "origin": origin_of(session, document.id)},
                      owner_id=document.owner_id)


def document_event_json(document: Document) -> dict:
    return {"id": document.id, "owner_id": document.owner_id, "filename": document.filename,
            "sha256": document.sha256, "size": document.size,
            "content_type": document.mime_type, "status": document.status,
            "signature": document.signature if document.status == INFECTED else None,
            "scanned_at": document.scanned_at.isoformat() if document.scanned_at else None,
            "title": document.title, "external_ref": document.external_ref}

"""Scan a stored document with clamd and record what it said."""
from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from documents.models import CLEAN, INFECTED, SCAN_ERROR, UNSCANNABLE, Document
from documents.scanner import CLEAN as VERDICT_CLEAN
from documents.scanner import INFECTED as VERDICT_INFECTED
from documents.storage import LocalStorage
from store import audit
from store.db import utcnow


class ScanFailed(RuntimeError):
    """clamd could not give a verdict; retry, and never call the file clean."""


def signatures_fingerprint(version: str) -> str:
    """'ClamAV 1.4.6/27830/Sun Nov 22 ...' -> a hash of the database part after the '/'."""
    database = version.partition("/")[2] or version
    return hashlib.sha256(database.encode()).hexdigest()[:16]


def scan_document(session: Session, storage: LocalStorage, scanner, document_id: int,
                  max_bytes: int) -> str | None:
    """Scan and record; returns the new status. Raises ScanFailed when clamd cannot say.

    `max_bytes` must not exceed clamd's StreamMaxLength: a larger file would be cut
    off and could be reported OK, so it is `unscannable` instead.
    """
    document = session.get(Document, document_id)
    if document is None:
        return None
    document.scan_attempts += 1
    if document.size > max_bytes:
        document.status = UNSCANNABLE
        return document.status
    if storage.is_quarantined(document.sha256):  # the same bytes were found infected
        document.status, document.signature = INFECTED, "quarantined"
        return document.status
    version = scanner.version()
    with storage.open(document.sha256) as blob:
        verdict = scanner.scan_stream(blob)
    if verdict.status == VERDICT_CLEAN:
        document.status = CLEAN
    elif verdict.status == VERDICT_INFECTED:
        document.status, document.signature = INFECTED, verdict.signature
        storage.quarantine(document.sha256)
        audit.record(session, "scanner", "document.infected", "document", document.id,
                     {"signature": verdict.signature})
    else:
        raise ScanFailed(verdict.detail)
    document.scanner_version = version[:255]
    document.signatures_fingerprint = signatures_fingerprint(version)
    document.scanned_at = utcnow()
    audit.record(session, "scanner", "document.scanned", "document", document.id,
                 {"status": document.status})
    return document.status


def give_up(session: Session, document_id: int) -> None:
    document = session.get(Document, document_id)
    if document is not None and document.status not in (CLEAN, INFECTED):
        document.status = SCAN_ERROR

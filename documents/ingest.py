"""Take an upload: stream it to a temp file while hashing and capping, then store it once."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from documents.checks import Candidate, check
from documents.models import INFECTED, PENDING_SCAN, Document
from documents.sniffing import sanitize_filename
from documents.storage import BlobStorage
from store import audit
from store.db import insert_or_existing, utcnow
from store.outbox import enqueue
from store.task_names import SCAN_DOCUMENT

CHUNK = 64 * 1024


class TooLarge(Exception):
    # Not a ValueError: werkzeug's form parser silently swallows those.
    pass


@dataclasses.dataclass(frozen=True)
class Spooled:
    path: Path
    sha256: str
    size: int


class HashingSpool:
    """A writable temp file that hashes and caps what is written into it.

    Handed to the multipart parser as the file's stream, so an upload is hashed,
    capped and stored in one pass over the bytes, with no second copy.
    """

    def __init__(self, storage: BlobStorage, max_bytes: int):
        self._file, self.path = storage.temp_file("w+b")
        self._digest, self._size, self._max = hashlib.sha256(), 0, max_bytes

    def write(self, data: bytes) -> int:
        self._size += len(data)
        if self._size > self._max:
            raise TooLarge(f"the file exceeds {self._max} bytes")
        self._digest.update(data)
        return self._file.write(data)

    def __getattr__(self, name):  # read, readline, seek, tell, flush for the parser
        return getattr(self._file, name)

    def finish(self) -> Spooled:
        self._file.close()
        return Spooled(self.path, self._digest.hexdigest(), self._size)

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def spool(stream: BinaryIO, storage: BlobStorage, max_bytes: int) -> Spooled:
    """Copy a readable stream (not an HTTP upload) into a HashingSpool, in chunks."""
    target = HashingSpool(storage, max_bytes)
    try:
        while chunk := stream.read(CHUNK):
            target.write(chunk)
    except BaseException:
        target.discard()
        raise
    return target.finish()


def create_document(session: Session, storage: BlobStorage, owner_id: int, upload: Spooled,
                    filename: str | None, declared_type: str | None,
                    allowlist: tuple[str, ...]) -> tuple[Document, bool]:
    """Sniff, store and record one upload; (document, created). The caller commits.

    The same owner sending the same bytes gets the existing document back, decided
    by the UNIQUE (owner_id, sha256) constraint, so concurrent uploads cannot both
    create one. Another owner's copy is a separate document. Bytes already found
    infected are never stored again: the new document is infected at once.
    """
    try:
        checked = check(Candidate(upload.path, upload.size, upload.sha256,
                                  sanitize_filename(filename), declared_type, allowlist))
        mime, name = checked.mime_type, checked.filename
        quarantined = storage.is_quarantined(upload.sha256)
        if not quarantined:
            storage.put(upload.path, upload.sha256)
    finally:
        upload.path.unlink(missing_ok=True)
    document, created = insert_or_existing(session, Document, dict(
        owner_id=owner_id, sha256=upload.sha256, size=upload.size, mime_type=mime,
        filename=name, status=INFECTED if quarantined else PENDING_SCAN,
        signature="quarantined" if quarantined else None, scan_attempts=0,
        created_at=utcnow()), ["owner_id", "sha256"])
    if not created:
        return document, False
    if not quarantined:
        enqueue(session, SCAN_DOCUMENT, {"document_id": document.id})
    audit.record(session, f"client:{owner_id}", "document.upload", "document", document.id,
                 {"size": upload.size, "mime_type": mime, "status": document.status})
    return document, True

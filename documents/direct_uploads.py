"""Uploads that skip the web tier: the client PUTs straight into the object store.

1. `start` records the upload and presigns one PUT of exactly the declared size and
   type into the store's upload area, for a short time.
2. The client sends the bytes there, then asks to `complete`.
3. The worker's `ingest` reads the object back through the same spool as any upload
   (hashing, capping), the same checks and the same per-owner dedup, so a document
   made this way is indistinguishable from one posted to /v1/documents. The object
   in the upload area is then deleted (`release`); retention removes any left over.

Nothing is served from the upload area, and the bytes a client sent count for
nothing until the worker has checked them.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from documents.ingest import TooLarge, create_document, spool
from documents.models import (
    AWAITING_UPLOAD,
    UPLOAD_COMPLETED,
    UPLOAD_EXPIRED,
    UPLOAD_FAILED,
    UPLOAD_PROCESSING,
    UPLOAD_REJECTED,
    Upload,
)
from documents.sniffing import GENERIC, Rejected, sanitize_filename
from documents.storage import BlobStorage
from store import audit
from store.db import utcnow
from store.outbox import enqueue
from store.task_names import INGEST_UPLOAD


class DirectUploadsUnavailable(RuntimeError):
    """The storage backend cannot take writes from clients (file://)."""


class NotUploaded(LookupError):
    """Nothing has been sent to the upload's URL."""


class UploadExpired(LookupError):
    """The upload was not completed in time; its URL and object are gone."""


def start(session: Session, storage: BlobStorage, owner_id: int, filename: str | None,
          declared_type: str | None, size: int, *, max_bytes: int,
          allowlist: tuple[str, ...], url_ttl: int,
          sha256: str | None = None) -> tuple[Upload, dict]:
    """Record an upload and presign its PUT: (upload, {method, url, headers}). With the
    client's `sha256` (hex), the PUT must carry it, and the worker checks it again.

    Rejected (413, 415) for what a single upload would refuse before reading a byte;
    DirectUploadsUnavailable when the backend cannot presign writes.
    """
    if size > max_bytes:
        raise Rejected(413, "payload_too_large", f"the file exceeds {max_bytes} bytes")
    declared = (declared_type or "application/octet-stream").split(";")[0].strip().lower()
    if declared not in GENERIC and declared not in allowlist:
        raise Rejected(415, "unsupported_type", f"Files of type {declared} are not accepted.")
    name = secrets.token_hex(16)
    target = storage.presign_upload(name, declared, size, url_ttl, sha256)
    if target is None:
        raise DirectUploadsUnavailable(storage.name)
    upload = Upload(owner_id=owner_id, object_name=name, filename=sanitize_filename(filename),
                    declared_type=declared, size=size, sha256=sha256, status=AWAITING_UPLOAD,
                    created_at=utcnow(), url_expires_at=utcnow() + dt.timedelta(seconds=url_ttl))
    session.add(upload)
    session.flush()
    audit.record(session, f"client:{owner_id}", "upload.start", "upload", upload.id,
                 {"size": size, "declared_type": declared})
    return upload, target


def complete(session: Session, storage: BlobStorage, upload: Upload,
             complete_within: dt.timedelta) -> bool:
    """Hand a sent upload to the worker; False when it was already handed over (a
    repeated or concurrent complete enqueues nothing more). The caller commits."""
    if upload.status == UPLOAD_EXPIRED:
        raise UploadExpired(upload.id)
    if upload.status != AWAITING_UPLOAD:
        return False
    if utcnow() - upload.created_at > complete_within:
        raise UploadExpired(upload.id)
    try:
        storage.upload_size(upload.object_name)
    except FileNotFoundError:
        raise NotUploaded(upload.id) from None
    claimed = session.execute(update(Upload).where(
        Upload.id == upload.id, Upload.status == AWAITING_UPLOAD).values(
        status=UPLOAD_PROCESSING, enqueued_at=utcnow())).rowcount
    session.refresh(upload)
    if not claimed:
        return False
    enqueue(session, INGEST_UPLOAD, {"upload_id": upload.id})
    return True


def ingest(session: Session, storage: BlobStorage, upload_id: int, max_bytes: int,
           allowlist: tuple[str, ...]) -> Upload | None:
    """Turn a completed upload's object into a document, or record why not; the caller
    commits, then `release`s the object. Safe to run twice: only a `processing`
    upload is worked on. Storage and database failures propagate, for a retry."""
    upload = session.scalar(select(Upload).where(Upload.id == upload_id).with_for_update())
    if upload is None or upload.status != UPLOAD_PROCESSING:
        return None
    cap = min(upload.size, max_bytes)
    try:
        stored = storage.upload_size(upload.object_name)
        if stored > cap:  # the store took more than was signed for: never read it
            raise TooLarge(f"the object holds {stored} bytes, more than the {cap} declared")
        with contextlib.closing(storage.open_upload(upload.object_name)) as body:
            spooled = spool(body, storage, cap)
        if upload.sha256 is not None and not hmac.compare_digest(upload.sha256,
                                                                 spooled.sha256):
            spooled.path.unlink(missing_ok=True)
            raise Rejected(400, "digest_mismatch", "The bytes sent to the upload URL do not "
                           "have the SHA-256 given when the upload started.")
        document, _created = create_document(session, storage, upload.owner_id, spooled,
                                             upload.filename, upload.declared_type, allowlist)
    except FileNotFoundError:
        _finish(upload, UPLOAD_REJECTED, "not_uploaded", "Nothing was sent to the upload URL.")
    except TooLarge as exc:
        _finish(upload, UPLOAD_REJECTED, "payload_too_large", str(exc))
    except Rejected as exc:
        _finish(upload, UPLOAD_REJECTED, exc.code, str(exc))
    else:
        upload.document_id = document.id
        _finish(upload, UPLOAD_COMPLETED)
    audit.record(session, "worker", "upload.ingested", "upload", upload.id,
                 {"status": upload.status, "document_id": upload.document_id,
                  "code": upload.error_code})
    return upload


def release(storage: BlobStorage, upload: Upload) -> None:
    """Delete the upload's object; one left behind (the store away) is retention's."""
    storage.delete_upload(upload.object_name)


def give_up(session: Session, upload_id: int) -> None:
    """Retries spent, or the worker kept dying: the upload failed, nothing was made."""
    upload = session.get(Upload, upload_id)
    if upload is not None and upload.status == UPLOAD_PROCESSING:
        _finish(upload, UPLOAD_FAILED, "ingest_failed",
                "The upload could not be read back from storage; start a new one.")


def expire_abandoned(session: Session, older_than: dt.datetime) -> int:
    """Uploads never completed before `older_than`: expired (their objects are retention's)."""
    return session.execute(update(Upload).where(
        Upload.status == AWAITING_UPLOAD, Upload.created_at < older_than).values(
        status=UPLOAD_EXPIRED, finished_at=utcnow())).rowcount


def in_flight(session: Session, names: list[str]) -> set[str]:
    """Those of `names` whose upload the worker may still be reading."""
    return set(session.scalars(select(Upload.object_name).where(
        Upload.object_name.in_(names), Upload.status.in_((AWAITING_UPLOAD,
                                                         UPLOAD_PROCESSING)))))


def _finish(upload: Upload, status: str, code: str | None = None,
            message: str | None = None) -> None:
    upload.status, upload.error_code = status, code
    upload.error_message = message[:500] if message else None
    upload.finished_at = utcnow()

"""Export the audit log's old entries to the object store, and only then let them go.

The audit log is append-only, and never pruned by a schedule: an operator runs `flask
audit export --before DATE` (webapp/audit_cli.py). That writes every entry older than
DATE as JSON Lines, gzip, to `audit/audit-before-<date>-<first id>-<last id>.jsonl.gz`
in the blob store, reads the object back and checks its SHA-256, and records the
export (`audit_exports`). With `--delete` it then deletes the entries the export
covers, in batches: the database's own trigger refuses to delete any entry that no
recorded export covers (migration 0025), so a bug here cannot lose one.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
from typing import BinaryIO

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from documents.storage import BlobStorage
from store import audit
from store.audit import AuditExport, AuditLog
from store.db import utcnow

PREFIX = "audit/"
BATCH = 5000


class ExportFailed(RuntimeError):
    """The object read back from the store is not what was written: nothing recorded."""


@dataclasses.dataclass(frozen=True)
class Exported:
    export: AuditExport | None  # None: no entry is older than the cut
    deleted: int


class _Hashing:
    """A file that hashes and counts what is written through it."""

    def __init__(self, handle: BinaryIO):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def entry_json(entry: AuditLog) -> dict:
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor,
            "action": entry.action, "subject_type": entry.subject_type,
            "subject_id": entry.subject_id, "detail": entry.detail}


def export_before(session: Session, storage: BlobStorage, before: dt.datetime, actor: str,
                  delete_after: bool = False) -> Exported:
    """Export the entries older than `before` (which must be in the past), verify the
    stored object, record it; with `delete_after`, delete what it covers. Commits."""
    if before > utcnow():
        raise ValueError("the cut must be in the past: entries are still being written")
    first, last, entries = session.execute(
        select(func.min(AuditLog.id), func.max(AuditLog.id), func.count())
        .where(AuditLog.at < before)).one()
    if not entries:
        return Exported(None, 0)
    key = f"{PREFIX}audit-before-{before:%Y%m%dT%H%M%SZ}-{first}-{last}.jsonl.gz"
    handle, path = storage.temp_file()
    try:
        with handle:
            hashing = _Hashing(handle)
            with gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0) as archive:
                after = first - 1
                while True:
                    batch = list(session.scalars(
                        select(AuditLog).where(AuditLog.id > after, AuditLog.id <= last,
                                               AuditLog.at < before)
                        .order_by(AuditLog.id).limit(BATCH)))
                    if not batch:
                        break
                    for entry in batch:
                        archive.write(json.dumps(entry_json(entry), ensure_ascii=False,
                                                 separators=(",", ":")).encode() + b"\n")
                    after = batch[-1].id
                    session.expunge_all()
        session.rollback()  # no transaction held while the store works
        storage.put_named(key, path, "application/gzip")
    finally:
        path.unlink(missing_ok=True)
    sha256 = hashing.digest.hexdigest()
    _verify(storage, key, sha256)
    export = AuditExport(cut=before, first_id=first, last_id=last, entries=entries,
                         object_key=key, sha256=sha256, size=hashing.size, exported_by=actor)
    session.add(export)
    audit.record(session, actor, "audit.export", "audit_log", key,
                 {"entries": entries, "first_id": first, "last_id": last, "sha256": sha256})
    session.commit()
    return Exported(export, delete_exported(session, export) if delete_after else 0)


def exports(session: Session) -> list[AuditExport]:
    """Every export, oldest first."""
    return list(session.scalars(select(AuditExport).order_by(AuditExport.id)))


def delete_exported(session: Session, export: AuditExport) -> int:
    """Delete the entries `export` covers, BATCH a transaction; how many. Commits."""
    deleted = 0
    while True:
        ids = list(session.scalars(select(AuditLog.id).where(
            AuditLog.id.between(export.first_id, export.last_id), AuditLog.at < export.cut)
            .order_by(AuditLog.id).limit(BATCH)))
        if not ids:
            break
        session.execute(delete(AuditLog).where(AuditLog.id.in_(ids)))
        export.deleted += len(ids)
        session.commit()
        deleted += len(ids)
    return deleted


def _verify(storage: BlobStorage, key: str, sha256: str) -> None:
    digest = hashlib.sha256()
    with storage.open_named(key) as stored:
        while chunk := stored.read(1024 * 1024):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ExportFailed(f"{key}: the stored object does not match what was written")

"""Bulk imports: accept an archive once per owner, then ingest its entries row by row.

Every entry goes through `create_document`, the same path as a single upload
(sniff, per-owner dedup, scan). Each entry or manifest problem becomes one
`import_rows` record, UNIQUE (import_id, row_no), committed in batches with the
documents it created; a redelivered task resumes after the last committed row.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from documents.archives import (
    ARCHIVE_TYPES,
    CappedMember,
    EntryRejected,
    Limits,
    UnsafeArchive,
    base_name,
    display_name,
    entry_verdict,
    manifest_member,
    normalized_name,
    open_archive,
)
from documents.ingest import Spooled, TooLarge, create_document, spool
from documents.manifests import (
    InvalidManifest,
    ManifestProblem,
    ManifestRow,
    check_xlsx_parts,
    read_manifest,
)
from documents.models import (
    COMPLETED,
    COMPLETED_WITH_ERRORS,
    FAILED,
    INFECTED,
    QUEUED,
    ROW_DUPLICATE,
    ROW_OK,
    ROW_REJECTED,
    RUNNING,
    Document,
    Import,
    ImportRow,
    describe,
)
from documents.sniffing import XLSX, Rejected, allowlist_from, sniff
from documents.storage import BlobStorage
from store import audit, events
from store.db import insert_all_unless_exist, insert_or_existing, utcnow
from store.outbox import enqueue
from store.task_names import RUN_IMPORT

FINISHED = (COMPLETED, COMPLETED_WITH_ERRORS, FAILED)
MANIFEST_TYPES = ("text/plain", "text/csv", XLSX)
MANIFEST_MAX_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ImportSettings:
    limits: Limits
    allowlist: tuple[str, ...]
    batch_size: int = 100

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ImportSettings":
        """From the app's settings; an entry is capped like a single upload."""
        return cls(Limits(max_entries=config["IMPORT_MAX_ENTRIES"],
                          max_total_bytes=config["IMPORT_MAX_TOTAL_BYTES"],
                          max_ratio=config["IMPORT_MAX_RATIO"],
                          max_entry_bytes=config["DOCUMENT_MAX_BYTES"]),
                   allowlist_from(config["DOCUMENT_ALLOWED_TYPES"]),
                   batch_size=config["IMPORT_BATCH_SIZE"])


@dataclasses.dataclass
class PlannedRow:
    """One row of the import's work list, fixed before any entry is ingested."""
    entry: zipfile.ZipInfo | None
    entry_name: str | None
    rejection: EntryRejected | None = None
    manifest_row: int | None = None
    title: str | None = None
    external_ref: str | None = None
    tags: tuple[str, ...] = ()


# -- accepting an upload ---------------------------------------------------------------------

def manifest_kind(spooled: Spooled, filename: str | None, declared_type: str | None) -> str:
    """csv or xlsx by content (libmagic), or Rejected (415) like any upload."""
    mime = sniff(spooled.path, spooled.size, declared_type, filename or "", MANIFEST_TYPES)
    return "xlsx" if mime == XLSX else "csv"


def check_upload(storage: BlobStorage, archive: Spooled, manifest: Spooled | None,
                 kind: str | None, limits: Limits) -> None:
    """UnsafeArchive or InvalidManifest now, rather than a failed import later.

    Only directories are read here (the archive's, and an XLSX manifest's parts):
    parsing a manifest is the import task's work, in the worker's time and memory
    limits, never a web request's.
    """
    with open_archive(str(archive.path), limits.max_entries) as opened:
        if manifest is not None:
            if kind == "xlsx":
                check_xlsx_parts(manifest.path)
            return
        inside = manifest_member(opened.infolist())
        if inside is not None and inside[1] == "xlsx":
            with _spooled_member(opened, inside[0], storage, limits) as path:
                check_xlsx_parts(path)


def create_import(session: Session, storage: BlobStorage, owner_id: int, archive: Spooled,
                  manifest: Spooled | None, kind: str | None) -> tuple[Import, bool]:
    """Store the files and record the import once per (owner, archive bytes); queue it."""
    storage.put(archive.path, archive.sha256)
    if manifest is not None:
        storage.put(manifest.path, manifest.sha256)
    job, created = insert_or_existing(session, Import, dict(
        owner_id=owner_id, archive_sha256=archive.sha256, archive_size=archive.size,
        manifest_sha256=manifest.sha256 if manifest else None, manifest_kind=kind,
        status=QUEUED, uncompressed_bytes=0, attempts=0, created_at=utcnow()),
        ["owner_id", "archive_sha256"])
    if created:
        enqueue(session, RUN_IMPORT, {"import_id": job.id})
        audit.record(session, f"client:{owner_id}", "import.create", "import", job.id,
                     {"archive_size": archive.size, "manifest": kind})
    return job, created


# -- running an import -----------------------------------------------------------------------

def run_import(session: Session, storage: BlobStorage, import_id: int,
               settings: ImportSettings) -> str | None:
    """Ingest every row not yet recorded; the import's final status (None if unknown)."""
    job = session.get(Import, import_id)
    if job is None or job.status in FINISHED:
        return job.status if job else None
    if job.started_at is None:
        job.started_at = utcnow()
        audit.record(session, "system", "import.start", "import", job.id, {})
    job.status, job.attempts = RUNNING, job.attempts + 1
    job.enqueued_at = utcnow()  # running: the redrive waits REDRIVE_IMPORT_AFTER from here
    session.commit()
    try:
        # zipfile seeks (central directory first, then each member), so the archive is
        # read from a local file: the blob itself on file://, else one streamed copy
        # on this host's disk, bounded by IMPORT_MAX_BYTES and gone after the import.
        with storage.local_copy(job.archive_sha256) as path, \
                open_archive(str(path), settings.limits.max_entries) as archive:
            plan = _plan(archive, storage, job, settings.limits)
            job.total = len(plan)
            session.commit()
            _ingest(session, storage, job, archive, plan, settings)
    except (UnsafeArchive, InvalidManifest) as exc:
        session.rollback()
        return _finish(session, job, FAILED, exc.code, str(exc))
    return _finish(session, job, COMPLETED)


def give_up(session: Session, import_id: int) -> None:
    """Fail an import the worker could not finish: its retries are spent, or the
    worker running it died on every delivery. Rows already recorded stay."""
    job = session.get(Import, import_id)
    if job is not None and job.status not in FINISHED:
        _finish(session, job, FAILED, "import_error",
                "The import failed on every attempt; the rows recorded so far stay.")


def _plan(archive: zipfile.ZipFile, storage: BlobStorage, job: Import,
          limits: Limits) -> list[PlannedRow]:
    entries = [info for info in archive.infolist() if not info.is_dir()]
    inside = manifest_member(entries)
    rows, by_name = [], {}
    for info in entries:
        if inside is not None and info is inside[0]:
            continue  # the manifest describes the import; it is not a document
        row = PlannedRow(info, display_name(info), entry_verdict(info))
        name = normalized_name(info)
        if row.rejection is None and name in by_name:
            row.rejection = EntryRejected("duplicate_name",
                                          "Another entry of the archive has this name.")
        by_name.setdefault(name, row)
        rows.append(row)
    if job.manifest_sha256:
        with storage.local_copy(job.manifest_sha256) as path:
            return rows + _apply_manifest(
                read_manifest(path, job.manifest_kind, limits.max_entries), rows, by_name,
                limits.max_entries)
    if inside is not None:
        with _spooled_member(archive, inside[0], storage, limits) as path:
            return rows + _apply_manifest(read_manifest(path, inside[1], limits.max_entries),
                                          rows, by_name, limits.max_entries)
    return rows


def _apply_manifest(manifest: Iterable[ManifestRow | ManifestProblem], rows: list[PlannedRow],
                    by_name: dict[str, PlannedRow], max_rows: int) -> list[PlannedRow]:
    """Attach metadata to the entries; the manifest's own problems become extra rows.

    With a manifest, it is the contract: an entry it does not list is not imported.
    """
    problems, listed = [], set()
    for count, item in enumerate(manifest, 1):
        if count > max_rows:
            raise InvalidManifest("manifest_too_long",
                                  f"The manifest has more than {max_rows} rows.")
        if isinstance(item, ManifestProblem):
            problems.append(PlannedRow(None, item.filename, EntryRejected(item.code, item.message),
                                       item.row_no))
            continue
        target = by_name.get(item.filename)
        if target is None or item.filename in listed:
            code, message = (("missing_file", "The archive has no entry of this name.")
                             if target is None else
                             ("duplicate_row", "The manifest lists this filename twice."))
            problems.append(PlannedRow(None, item.filename[:500], EntryRejected(code, message),
                                       item.row_no))
            continue
        listed.add(item.filename)
        target.manifest_row, target.title = item.row_no, item.title
        target.external_ref, target.tags = item.external_ref, item.tags
    for row in rows:
        if row.manifest_row is None and row.rejection is None:
            row.rejection = EntryRejected("unknown_file", "The manifest does not list this entry.")
    return problems


def _ingest(session: Session, storage: BlobStorage, job: Import, archive: zipfile.ZipFile,
            plan: list[PlannedRow], settings: ImportSettings) -> None:
    done = session.scalar(select(func.coalesce(func.max(ImportRow.row_no), 0))
                          .where(ImportRow.import_id == job.id))
    expanded, batch = job.uncompressed_bytes, []
    for row_no, row in enumerate(plan[done:], done + 1):
        # No autoflush: a batch's outbox and audit rows go in one INSERT each at commit.
        with session.no_autoflush:
            outcome, size = _ingest_row(session, storage, job.owner_id, archive, row, settings,
                                        expanded)
        expanded += size
        batch.append({
            "import_id": job.id, "row_no": row_no, "entry_name": row.entry_name,
            "manifest_row": row.manifest_row, "title": row.title,
            "external_ref": row.external_ref, "tags": list(row.tags) or None,
            # executemany needs the same keys in every row
            "code": None, "message": None, "document_id": None, **outcome})
        if len(batch) >= settings.batch_size:
            _commit_batch(session, job, batch, expanded)
            batch = []
    _commit_batch(session, job, batch, expanded)


def _commit_batch(session: Session, job: Import, batch: list[dict], expanded: int) -> None:
    """The rows, their documents and scan messages, and the progress, together."""
    insert_all_unless_exist(session, ImportRow, batch, ["import_id", "row_no"])
    job.uncompressed_bytes = expanded
    job.enqueued_at = utcnow()  # progress: alive, not to be redriven
    session.commit()


def _ingest_row(session: Session, storage: BlobStorage, owner_id: int,
                archive: zipfile.ZipFile, row: PlannedRow, settings: ImportSettings,
                expanded: int) -> tuple[dict, int]:
    """(outcome columns, bytes decompressed) for one planned row."""
    if row.rejection is not None:
        return _rejected(row.rejection.code, str(row.rejection)), 0
    limits = settings.limits
    if expanded >= limits.max_total_bytes:
        return _rejected("total_size_exceeded", "The archive expands past the total size "
                         f"limit of {limits.max_total_bytes} bytes."), 0
    member = None
    try:
        with archive.open(row.entry) as stream:
            member = CappedMember(stream, row.entry, limits, expanded)
            spooled = spool(member, storage, limits.max_entry_bytes)
    except EntryRejected as exc:
        return _rejected(exc.code, str(exc)), member.size
    except TooLarge:
        return _rejected("too_large", f"The entry is larger than {limits.max_entry_bytes} "
                         "bytes."), member.size
    except NotImplementedError:
        return _rejected("unsupported_compression", "The entry's compression method is not "
                         "supported."), 0
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        return _rejected("corrupt_entry", f"The entry cannot be read ({exc})."[:500]), \
            member.size if member else 0
    try:
        document, created = create_document(session, storage, owner_id, spooled,
                                            base_name(row.entry), None, settings.allowlist)
    except Rejected as exc:
        code = "nested_archive" if exc.mime in ARCHIVE_TYPES else exc.code
        return _rejected(code, str(exc)), spooled.size
    describe(session, document, row.title, row.external_ref, row.tags)
    return {"outcome": ROW_OK if created else ROW_DUPLICATE, "document_id": document.id}, \
        spooled.size


def _rejected(code: str, message: str) -> dict:
    return {"outcome": ROW_REJECTED, "code": code, "message": message[:500]}


def _finish(session: Session, job: Import, status: str, code: str | None = None,
            message: str | None = None) -> str:
    counts = import_counts(session, job.id)
    if status == COMPLETED and counts[ROW_REJECTED]:
        status = COMPLETED_WITH_ERRORS
    job.status, job.finished_at = status, utcnow()
    job.error_code, job.error_message = code, message[:500] if message else None
    audit.record(session, "system", "import.fail" if status == FAILED else "import.finish",
                 "import", job.id, {"status": status, "total": job.total, **counts,
                                    **({"error": code} if code else {})})
    events.record(session, events.IMPORT_FINISHED, {
        "id": job.id, "owner_id": job.owner_id, "status": status, "total": job.total,
        "counts": counts, "error": {"code": code, "message": job.error_message} if code else None,
        "finished_at": job.finished_at.isoformat()}, owner_id=job.owner_id)
    session.commit()
    return status


@contextlib.contextmanager
def _spooled_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, storage: BlobStorage,
                    limits: Limits) -> Iterator[Path]:
    """The archive's manifest member, copied (capped) to a temp file for a `with` block."""
    limits = dataclasses.replace(limits, max_total_bytes=MANIFEST_MAX_BYTES)
    try:
        with archive.open(info) as stream:
            path = spool(CappedMember(stream, info, limits, 0), storage, MANIFEST_MAX_BYTES).path
    except (EntryRejected, TooLarge, NotImplementedError, RuntimeError,
            zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InvalidManifest("invalid_manifest",
                              f"The archive's manifest cannot be read ({exc}).") from None
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


# -- reading progress ------------------------------------------------------------------------

def import_counts(session: Session, import_id: int) -> dict[str, int]:
    """Rows by outcome; an ingested entry whose scan found it infected counts as infected."""
    counts = {ROW_OK: 0, ROW_DUPLICATE: 0, ROW_REJECTED: 0, INFECTED: 0}
    rows = session.execute(
        select(ImportRow.outcome, Document.status, func.count())
        .outerjoin(Document, Document.id == ImportRow.document_id)
        .where(ImportRow.import_id == import_id)
        .group_by(ImportRow.outcome, Document.status))
    for outcome, document_status, count in rows:
        counts[INFECTED if document_status == INFECTED else outcome] += count
    return counts


def progress(session: Session, job: Import, now: dt.datetime | None = None) -> dict:
    # once its rows have expired, the counts they gave when they did
    counts = job.counts if job.rows_expired_at else import_counts(session, job.id)
    processed = sum(counts.values())
    status = job.status
    if status == QUEUED and processed:
        status = RUNNING  # the job row was read before the worker started; its rows after
    if status == COMPLETED and counts[INFECTED]:
        status = COMPLETED_WITH_ERRORS  # a scan finished after the import did
    end = job.finished_at or now or utcnow()
    elapsed = (end - job.started_at).total_seconds() if job.started_at else 0.0
    rate = processed / elapsed if elapsed > 0 else 0.0
    remaining = (job.total or 0) - processed
    if status in FINISHED:
        eta = 0.0
    else:
        eta = round(remaining / rate, 1) if rate > 0 and job.total is not None else None
    return {
        "id": job.id, "status": status, "total": job.total, "processed": processed,
        "succeeded": counts[ROW_OK], "duplicates": counts[ROW_DUPLICATE],
        "rejected": counts[ROW_REJECTED], "infected": counts[INFECTED],
        "percent": round(100.0 * processed / job.total, 1) if job.total else (
            100.0 if status in FINISHED else 0.0),
        "rows_per_second": round(rate, 1), "eta_seconds": eta,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": {"code": job.error_code, "message": job.error_message}
        if job.error_code else None,
    }


def rows_to_expire(before: dt.datetime):
    """The ids of finished imports whose rows are past retention (finished before
    `before`) and not yet expired, for `expire_rows`."""
    return select(Import.id).where(Import.status.in_(FINISHED), Import.finished_at < before,
                                   Import.rows_expired_at.is_(None)).order_by(Import.id)


def expire_rows(session: Session, job: Import) -> int:
    """Keep a finished import's counts on it and delete its rows that name no
    document: the rejected ones (its error report) and those whose document has been
    deleted. A row naming a document stays while the document does: it says which
    import brought it (`import_origins`, deleting an import with its documents), so
    what is left is bounded by the documents. How many rows went; the caller commits."""
    job.counts = import_counts(session, job.id)
    job.rows_expired_at = utcnow()
    return session.execute(delete(ImportRow).where(
        ImportRow.import_id == job.id, ImportRow.document_id.is_(None))).rowcount


def import_origins(session: Session, document_ids: list[int]) -> dict[int, int]:
    """{document id: the import that brought it} for those of `document_ids` that came
    in an archive (the first import, when several carried the same bytes)."""
    if not document_ids:
        return {}
    rows = session.execute(select(ImportRow.document_id, func.min(ImportRow.import_id))
                           .where(ImportRow.document_id.in_(document_ids))
                           .group_by(ImportRow.document_id)).all()
    return dict(rows)


class ReportExpired(Exception):
    """The import's rows have expired (`expire_rows`): its error report is gone."""


def error_report(session: Session, job: Import) -> Iterator[tuple]:
    """`error_rows` for the import; ReportExpired once its rows have expired."""
    if job.rows_expired_at:
        raise ReportExpired(job.id)
    return error_rows(session, job.id)


def error_rows(session: Session, import_id: int) -> Iterator[tuple]:
    """(row_no, manifest_row, entry_name, code, message) for every entry not ingested clean."""
    query = (select(ImportRow.row_no, ImportRow.manifest_row, ImportRow.entry_name,
                    ImportRow.outcome, ImportRow.code, ImportRow.message, Document.status,
                    Document.signature)
             .outerjoin(Document, Document.id == ImportRow.document_id)
             .where(ImportRow.import_id == import_id,
                    (ImportRow.outcome == ROW_REJECTED) | (Document.status == INFECTED))
             .order_by(ImportRow.row_no)
             .execution_options(yield_per=1000))
    for row_no, manifest_row, name, outcome, code, message, status, signature in \
            session.execute(query):
        if outcome != ROW_REJECTED:
            code, message = INFECTED, f"The file is infected ({signature}) and quarantined."
        yield row_no, manifest_row, name, code, message

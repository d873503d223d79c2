"""Documents and bulk imports: one document per (owner, content hash), one import per archive."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    func,
    select,
    union,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, BigIntId, JSONType, UTCDateTime, insert_all_unless_exist, utcnow

PENDING_SCAN, CLEAN, INFECTED, SCAN_ERROR, UNSCANNABLE, MISSING_BLOB = (
    "pending_scan", "clean", "infected", "scan_error", "unscannable", "missing_blob")
# missing_blob: the store lost the bytes (or holds others under their name); never
# served, until a verify finds them back (documents/blob_audit.py)
DOCUMENT_STATUSES = (PENDING_SCAN, CLEAN, INFECTED, SCAN_ERROR, UNSCANNABLE, MISSING_BLOB)


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer())
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger())
    mime_type: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default=PENDING_SCAN)
    signature: Mapped[str | None] = mapped_column(String(255))   # what clamd found
    scanner_version: Mapped[str | None] = mapped_column(String(255))
    signatures_fingerprint: Mapped[str | None] = mapped_column(String(64))
    scanned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    scan_attempts: Mapped[int] = mapped_column(Integer(), default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # What an import's manifest said of it (the first import that said anything)
    title: Mapped[str | None] = mapped_column(String(255))
    external_ref: Mapped[str | None] = mapped_column(String(255))
    # when its work was last handed to a worker (an import: or last made progress);
    # the redrive job hands it out again past its REDRIVE_*AFTER
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    # its text (documents/text/): None until a scan calls it clean (and again once one
    # calls it infected), then pending -> extracted | ocr | limited | failed | skipped
    text_status: Mapped[str | None] = mapped_column(String(20))
    text_reason: Mapped[str | None] = mapped_column(String(50))  # why limited, failed, skipped
    text_characters: Mapped[int | None] = mapped_column(Integer())
    text_pages_ocr: Mapped[int | None] = mapped_column(Integer())
    text_ms: Mapped[int | None] = mapped_column(Integer())       # the extraction's wall time
    # a preview PNG of its bytes is in the store (previews/, beside the blob)
    has_preview: Mapped[bool] = mapped_column(Boolean(), server_default=false())

    __table_args__ = (
        UniqueConstraint("owner_id", "sha256"),
        Index("ix_documents_status_enqueued_at", "status", "enqueued_at"),
        Index("ix_documents_owner_id_status", "owner_id", "status"),
        Index("ix_documents_owner_id_external_ref", "owner_id", "external_ref"),
        Index("ix_documents_created_at", "created_at"),  # RETENTION_DOCUMENT_DAYS
    )


class DocumentTag(Base):
    """A manifest's tag on a document: a row each, so `?tag=` is an indexed lookup on
    PostgreSQL and SQLite alike."""
    __tablename__ = "document_tags"

    document_id: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_document_tags_tag", "tag", "document_id"),)


def tags_of(session: Session, document_ids: list[int]) -> dict[int, list[str]]:
    """{document id: its tags, sorted} for those of `document_ids` that have any."""
    tags: dict[int, list[str]] = {}
    if document_ids:
        for document_id, tag in session.execute(
                select(DocumentTag.document_id, DocumentTag.tag)
                .where(DocumentTag.document_id.in_(document_ids))
                .order_by(DocumentTag.document_id, DocumentTag.tag)):
            tags.setdefault(document_id, []).append(tag)
    return tags


def describe(session: Session, document: Document, title: str | None,
             external_ref: str | None, tags: tuple[str, ...]) -> None:
    """Give a document a manifest's metadata: the title and reference it does not have
    yet, and any tags it does not carry yet. The caller commits."""
    document.title = document.title or title
    document.external_ref = document.external_ref or external_ref
    if tags:
        insert_all_unless_exist(session, DocumentTag,
                                [{"document_id": document.id, "tag": tag}
                                 for tag in dict.fromkeys(tags)], ["document_id", "tag"])


QUEUED, RUNNING, COMPLETED, COMPLETED_WITH_ERRORS, FAILED = (
    "queued", "running", "completed", "completed_with_errors", "failed")
IMPORT_STATUSES = (QUEUED, RUNNING, COMPLETED, COMPLETED_WITH_ERRORS, FAILED)
ROW_OK, ROW_DUPLICATE, ROW_REJECTED = "ok", "duplicate", "rejected"


class Import(Base):
    """A bulk import: one per (owner, archive hash)."""
    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer())
    archive_sha256: Mapped[str] = mapped_column(String(64))
    archive_size: Mapped[int] = mapped_column(BigInteger())
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    manifest_kind: Mapped[str | None] = mapped_column(String(10))   # csv | xlsx
    status: Mapped[str] = mapped_column(String(30), default=QUEUED)
    total: Mapped[int | None] = mapped_column(Integer())
    uncompressed_bytes: Mapped[int] = mapped_column(BigInteger(), default=0)
    error_code: Mapped[str | None] = mapped_column(String(50))
    error_message: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # when its work was last handed to a worker (an import: or last made progress);
    # the redrive job hands it out again past its REDRIVE_*AFTER
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    # RETENTION_IMPORT_ROWS_DAYS after it finished, its counts are kept here and its
    # rows that name no document are deleted (documents/imports.py: expire_rows)
    counts: Mapped[dict | None] = mapped_column(JSONType)
    rows_expired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("owner_id", "archive_sha256"),
                      Index("ix_imports_status_enqueued_at", "status", "enqueued_at"))


class ImportRow(Base):
    """What became of one archive entry or manifest row; written once per row_no."""
    __tablename__ = "import_rows"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    import_id: Mapped[int] = mapped_column(BigInteger())
    row_no: Mapped[int] = mapped_column(Integer())
    entry_name: Mapped[str | None] = mapped_column(String(500))
    manifest_row: Mapped[int | None] = mapped_column(Integer())
    outcome: Mapped[str] = mapped_column(String(20))         # ok | duplicate | rejected
    code: Mapped[str | None] = mapped_column(String(50))
    message: Mapped[str | None] = mapped_column(String(500))
    document_id: Mapped[int | None] = mapped_column(BigInteger())
    title: Mapped[str | None] = mapped_column(String(255))
    external_ref: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[list | None] = mapped_column(JSONType)

    __table_args__ = (UniqueConstraint("import_id", "row_no"),)


def referenced_blobs(session: Session, among: list[str] | None = None) -> set[str]:
    """The hashes whose blobs a row still needs: documents that may be served (an
    infected one's bytes are quarantined) and imports' archives and manifests;
    only those `among` the given hashes, when given."""
    def limited(column, *conditions):
        query = select(column).where(column.is_not(None), *conditions)
        return query.where(column.in_(among)) if among is not None else query
    return set(session.scalars(union(limited(Document.sha256, Document.status != INFECTED),
                                     limited(Import.archive_sha256),
                                     limited(Import.manifest_sha256))))


AWAITING_UPLOAD, UPLOAD_PROCESSING, UPLOAD_COMPLETED, UPLOAD_REJECTED, UPLOAD_FAILED, \
    UPLOAD_EXPIRED = ("awaiting_upload", "processing", "completed", "rejected", "failed",
                      "expired")
UPLOAD_STATUSES = (AWAITING_UPLOAD, UPLOAD_PROCESSING, UPLOAD_COMPLETED, UPLOAD_REJECTED,
                   UPLOAD_FAILED, UPLOAD_EXPIRED)


class Upload(Base):
    """A direct-to-store upload: the client PUTs the bytes into the store's upload area
    (uploads/<object_name>), then asks for them to become a document."""
    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer())
    object_name: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    declared_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger())   # declared, and signed into the PUT
    # the client's SHA-256 (hex), if it gave one: signed into the PUT, checked on ingest
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=AWAITING_UPLOAD)
    document_id: Mapped[int | None] = mapped_column(BigInteger())
    error_code: Mapped[str | None] = mapped_column(String(50))
    error_message: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    url_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # when its work was last handed to a worker (an import: or last made progress);
    # the redrive job hands it out again past its REDRIVE_*AFTER
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_uploads_status_created_at", "status", "created_at"),
                      Index("ix_uploads_status_enqueued_at", "status", "enqueued_at"))


def status_counts(session: Session) -> dict[str, int]:
    """Documents by status, every status present (zero when there are none)."""
    counts = dict(session.execute(select(Document.status, func.count())
                                  .group_by(Document.status)).all())
    return {status: counts.get(status, 0) for status in DOCUMENT_STATUSES}


def oldest_pending_scan(session: Session) -> dt.datetime | None:
    return session.scalar(select(func.min(Document.created_at)).where(
        Document.status == PENDING_SCAN))


def imports_in_progress(session: Session, limit: int = 20) -> list[Import]:
    return list(session.scalars(select(Import).where(Import.status.in_((QUEUED, RUNNING)))
                                .order_by(Import.id).limit(limit)))

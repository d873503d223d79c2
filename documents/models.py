"""Documents: one per (owner, content hash)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from webhooks.db import BigIntId, Base, UTCDateTime, utcnow

PENDING_SCAN, CLEAN, INFECTED, SCAN_ERROR, UNSCANNABLE = (
    "pending_scan", "clean", "infected", "scan_error", "unscannable")
DOCUMENT_STATUSES = (PENDING_SCAN, CLEAN, INFECTED, SCAN_ERROR, UNSCANNABLE)


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

    __table_args__ = (
        UniqueConstraint("owner_id", "sha256"),
        Index("ix_documents_owner_id_status", "owner_id", "status"),
    )

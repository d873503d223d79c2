"""The append-only audit log: a trigger refuses UPDATE and TRUNCATE, and a DELETE of
any entry that no verified export covers (`audit_exports`, written by `flask audit
export`, cron/audit_archive.py): old entries leave the database only once they are in
the object store."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, BigIntId, JSONType, UTCDateTime, utcnow


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict] = mapped_column(JSONType, default=dict)

    __table_args__ = (Index("ix_audit_log_subject", "subject_type", "subject_id"),)


class AuditExport(Base):
    """One export of the entries before `cut` (ids first_id..last_id) to the object
    store, read back and checked against `sha256` before this row was written: the
    delete trigger lets exactly the entries it covers go."""
    __tablename__ = "audit_exports"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    cut: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # it holds the entries before
    first_id: Mapped[int] = mapped_column(BigInteger())
    last_id: Mapped[int] = mapped_column(BigInteger())
    entries: Mapped[int] = mapped_column(Integer())
    object_key: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))   # of the gzip file as stored
    size: Mapped[int] = mapped_column(BigInteger())
    exported_by: Mapped[str] = mapped_column(String(100))
    exported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted: Mapped[int] = mapped_column(Integer(), default=0)  # entries since deleted


def record(session: Session, actor: str, action: str, subject_type: str,
           subject_id: object, detail: dict | None = None) -> AuditLog:
    """Add an entry to the caller's transaction: it commits with what it describes."""
    entry = AuditLog(actor=actor, action=action, subject_type=subject_type,
                     subject_id=str(subject_id), detail=detail or {})
    session.add(entry)
    return entry


def trail(session: Session, subject_type: str, subject_id: object,
          limit: int = 100) -> list[AuditLog]:
    """What happened to one subject, oldest first."""
    return list(session.scalars(select(AuditLog).where(
        AuditLog.subject_type == subject_type, AuditLog.subject_id == str(subject_id))
        .order_by(AuditLog.id).limit(limit)))

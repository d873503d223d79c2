"""The append-only audit log (on PostgreSQL a trigger refuses UPDATE and DELETE)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String, select
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

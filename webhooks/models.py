"""The durable event store: each (source, event_key) is stored once."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Index, Integer, String, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from store.db import Base, BigIntId, JSONType, UTCDateTime, utcnow
from store.sealing import SealedBytes

RECEIVED, PROCESSED, FAILED, DEAD = "received", "processed", "failed", "dead"
EVENT_STATUSES = (RECEIVED, PROCESSED, FAILED, DEAD)


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))        # payment | whatsapp | generic
    provider: Mapped[str] = mapped_column(String(64))    # which handler reads it
    event_type: Mapped[str | None] = mapped_column(String(100))
    # how far the delivery proves itself (store/signatures.py): signed | token, and
    # confirmed once the provider's API has confirmed what it says
    trust: Mapped[str] = mapped_column(String(12), server_default="signed")
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # last hand-off
    headers: Mapped[dict] = mapped_column(JSONType, default=dict)
    # sealed at rest (store/sealing.py); dropped by retention
    body: Mapped[bytes | None] = mapped_column(SealedBytes())
    status: Mapped[str] = mapped_column(String(20), default=RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # whether the people its body names are linked to it (store/subjects.py): set when
    # it is processed; erasure links the rest before it looks
    subjects_linked: Mapped[bool] = mapped_column(Boolean(), server_default=false())

    __table_args__ = (
        UniqueConstraint("source", "event_key"),
        Index("ix_webhook_events_status_received_at", "status", "received_at"),
        # the short tail link_pending looks for (webhooks/processing.py)
        Index("ix_webhook_events_unlinked", "id", postgresql_where=text("NOT subjects_linked"),
              sqlite_where=text("NOT subjects_linked")),
    )

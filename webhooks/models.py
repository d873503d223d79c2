"""The durable event store: each (source, event_key) is stored once.

A delivery's key is claimed in `webhook_event_keys` before its event is written
(store/outbox.insert_with_message), and the key's primary key decides duplicates.
The events themselves need no unique index of their own, and that is what lets
PostgreSQL range-partition them by `received_at` (migration 0028,
webhooks/partitions.py): a unique constraint on a partitioned table must include the
partition key, which (source, event_key) does not. The key table stays narrow (a key,
an id and a time) and unpartitioned; retention deletes a key with its event.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from store.db import Base, BigIntId, JSONType, UTCDateTime, utcnow
from store.sealing import SealedBytes

RECEIVED, PROCESSED, FAILED, DEAD = "received", "processed", "failed", "dead"
EVENT_STATUSES = (RECEIVED, PROCESSED, FAILED, DEAD)


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    # On PostgreSQL the table is partitioned by received_at and its primary key is
    # (id, received_at), as a partitioned table's must be; ids still come from one
    # sequence, so SQLAlchemy identifies a row by its id alone.
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
        Index("ix_webhook_events_status_received_at", "status", "received_at"),
        # the short tail link_pending looks for (webhooks/processing.py)
        Index("ix_webhook_events_unlinked", "id", postgresql_where=text("NOT subjects_linked"),
              sqlite_where=text("NOT subjects_linked")),
    )


class WebhookEventKey(Base):
    """A key an event claimed: its primary key is what makes a repeat a duplicate."""
    __tablename__ = "webhook_event_keys"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger(), unique=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

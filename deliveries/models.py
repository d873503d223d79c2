"""Destinations, their deliveries and each attempt.

A delivery is one event for one destination, created once (unique per pair) when the
dispatcher fans the event log out, and it keeps its state through every attempt:

    pending --(due, destination open)--> queued --(a worker claims it)--> sending
    sending --2xx--> succeeded
    sending --else--> pending (next_attempt_at from DELIVERY_RETRY_SCHEDULE) | failed

A failed delivery goes back to pending when it is retried by id or recovered by
time range. A destination is `active`, `failing` (its breaker is open: one probe per
DESTINATION_PROBE_INTERVAL) or `disabled` (after DESTINATION_DISABLE_AFTER of
continuous failure, until re-enabled); `paused` is the operator's own switch.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.db import Base, BigIntId, JSONType, UTCDateTime, utcnow
from store.sealing import SealedText

ACTIVE, FAILING, DISABLED = "active", "failing", "disabled"
DESTINATION_STATES = (ACTIVE, FAILING, DISABLED)

PENDING, QUEUED, SENDING, SUCCEEDED, FAILED = (
    "pending", "queued", "sending", "succeeded", "failed")
DELIVERY_STATUSES = (PENDING, QUEUED, SENDING, SUCCEEDED, FAILED)
IN_FLIGHT = (QUEUED, SENDING)


class Destination(Base):
    __tablename__ = "destinations"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list] = mapped_column(JSONType)       # ["payment.*", "document.scanned"]
    owner_id: Mapped[int | None] = mapped_column(Integer())   # None: every event
    allowed_networks: Mapped[list] = mapped_column(JSONType, default=list)
    allow_http: Mapped[bool] = mapped_column(Boolean(), default=False)
    paused: Mapped[bool] = mapped_column(Boolean(), default=False)
    state: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    # Standard Webhooks secrets ("whsec_" + base64 of 32 bytes); during a rotation the
    # previous one signs too, until previous_secret_until.
    # sealed at rest (store/sealing.py)
    secret: Mapped[str] = mapped_column(SealedText())
    previous_secret: Mapped[str | None] = mapped_column(SealedText())
    previous_secret_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    consecutive_failures: Mapped[int] = mapped_column(Integer(), default=0)
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_probe_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow,
                                                    onupdate=utcnow)

    __table_args__ = (Index("ix_destinations_owner_id", "owner_id"),)


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    destination_id: Mapped[int] = mapped_column(
        BigInteger(), ForeignKey("destinations.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger())  # events.id; purged with it
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("destination_id", "event_id"),
        Index("ix_deliveries_destination_id_status_id", "destination_id", "status", "id"),
        Index("ix_deliveries_status_enqueued_at", "status", "enqueued_at"),
        Index("ix_deliveries_created_at", "created_at"),
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("deliveries.id", ondelete="CASCADE"))
    destination_id: Mapped[int] = mapped_column(BigInteger())
    attempted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer())
    latency: Mapped[float] = mapped_column(Float())          # seconds
    succeeded: Mapped[bool] = mapped_column(Boolean())
    error: Mapped[str | None] = mapped_column(String(500))
    response_excerpt: Mapped[str | None] = mapped_column(SealedText())  # redacted, capped, sealed

    __table_args__ = (
        Index("ix_delivery_attempts_delivery_id", "delivery_id"),
        Index("ix_delivery_attempts_destination_id_attempted_at",
              "destination_id", "attempted_at"),
    )


class FanoutCursor(Base):
    """Where the dispatcher is in the event log: one row, locked while it fans out."""
    __tablename__ = "delivery_fanout"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger(), default=0)
    event_id: Mapped[int] = mapped_column(BigInteger(), default=0)


def parse_schedule(value: str) -> tuple[float, ...]:
    """DELIVERY_RETRY_SCHEDULE, "5,300,1800" -> (5.0, 300.0, 1800.0); ValueError for
    anything else."""
    try:
        delays = tuple(float(part) for part in str(value).split(",") if part.strip())
    except ValueError:
        delays = ()
    if not delays or any(not 0 <= d <= 30 * 86400 for d in delays):
        raise ValueError("DELIVERY_RETRY_SCHEDULE must be seconds, comma-separated, "
                         "each from 0 to 30 days")
    return delays

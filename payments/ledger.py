"""Payments: provider events mapped onto a status that only moves forward."""
from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import BigInteger, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store import events
from store.db import Base, BigIntId, UTCDateTime, utcnow

PENDING, SUCCEEDED, FAILED, REFUNDED = "pending", "succeeded", "failed", "refunded"
PAYMENT_STATUSES = (PENDING, SUCCEEDED, FAILED, REFUNDED)

# Where each status may go next. A failed attempt can still succeed (a customer
# retries a card); a refund is final.
FORWARD = {
    PENDING: {SUCCEEDED, FAILED, REFUNDED},
    FAILED: {SUCCEEDED, REFUNDED},
    SUCCEEDED: {REFUNDED},
    REFUNDED: set(),
}


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int | None] = mapped_column(BigInteger())   # minor units
    currency: Mapped[str | None] = mapped_column(String(10))
    last_event_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_event_id: Mapped[str | None] = mapped_column(String(255))
    transitions: Mapped[int] = mapped_column(Integer(), default=1)  # applied changes
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("provider", "reference"),)


@dataclasses.dataclass(frozen=True)
class PaymentUpdate:
    """What one provider event says about one payment."""
    provider: str
    reference: str
    status: str
    occurred_at: dt.datetime
    event_id: str
    amount: int | None = None
    currency: str | None = None
    # how the change was learned: the delivery's trust (signed, token, confirmed), or
    # None when no delivery said it (reconciliation asked the provider's API)
    trust: str | None = None


def may_move(current: str, new: str) -> bool:
    return new in FORWARD[current]


def apply_update(session: Session, update: PaymentUpdate, source: str | None = None) -> bool:
    """Apply an update if it moves the payment forward and is not older; True if applied,
    and then a `payment.updated` event is in the same transaction (never for a duplicate
    or a stale update). `source`: the webhook source it came through, if any."""
    now = utcnow()
    values = dict(
        provider=update.provider, reference=update.reference, status=update.status,
        amount=update.amount, currency=update.currency, last_event_at=update.occurred_at,
        last_event_id=update.event_id, transitions=1, created_at=now, updated_at=now)
    # The first word about a payment: its row and its event in one statement (a Core
    # statement, cached; returning the mapped row took the ORM's bulk path, and the
    # event as a statement of its own cost the drain a round trip per event).
    if events.insert_with_event(session, Payment, values, ["provider", "reference"],
                                events.PAYMENT_UPDATED,
                                _event_json(Payment(**values), None, source, update.trust)):
        return True
    payment = _locked(session, update)
    if payment.last_event_at and update.occurred_at < payment.last_event_at:
        return False
    if not may_move(payment.status, update.status):
        return False
    previous = payment.status
    payment.status = update.status
    payment.amount = payment.amount if update.amount is None else update.amount
    payment.currency = payment.currency or update.currency
    payment.last_event_at, payment.last_event_id = update.occurred_at, update.event_id
    payment.transitions += 1
    payment.updated_at = utcnow()
    _changed(session, payment, previous, source, update.trust)
    return True


def payment_json(payment: Payment) -> dict:
    """A payment as the API and the event log show it. `version` counts the changes
    applied to it, so a receiver can drop an older state that arrives late."""
    return {"provider": payment.provider, "reference": payment.reference,
            "status": payment.status, "amount": payment.amount, "currency": payment.currency,
            "version": payment.transitions, "created_at": payment.created_at.isoformat(),
            "updated_at": payment.updated_at.isoformat()}


def _changed(session: Session, payment: Payment, previous: str | None,
             source: str | None, trust: str | None) -> None:
    events.record(session, events.PAYMENT_UPDATED,
                  _event_json(payment, previous, source, trust))


def _event_json(payment: Payment, previous: str | None, source: str | None,
                trust: str | None) -> dict:
    return {**payment_json(payment), "previous_status": previous, "source": source,
            "trust": trust}


def _locked(session: Session, update: PaymentUpdate) -> Payment | None:
    return session.scalar(
        select(Payment)
        .where(Payment.provider == update.provider, Payment.reference == update.reference)
        .with_for_update())

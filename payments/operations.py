"""Reading the payments ledger: what the read API (/v1/payments) asks of it."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from payments.ledger import Payment


def find_payments(session: Session, *, provider: str | None = None, status: str | None = None,
                  updated_after: dt.datetime | None = None, after_id: int = 0,
                  limit: int = 100) -> list[Payment]:
    """Matching payments in the order they were first seen, after the cursor `after_id`."""
    query = select(Payment).where(Payment.id > after_id)
    if provider:
        query = query.where(Payment.provider == provider)
    if status:
        query = query.where(Payment.status == status)
    if updated_after:
        query = query.where(Payment.updated_at > updated_after)
    return list(session.scalars(query.order_by(Payment.id).limit(limit)))


def get_payment(session: Session, provider: str, reference: str) -> Payment | None:
    return session.scalar(select(Payment).where(Payment.provider == provider,
                                                Payment.reference == reference))

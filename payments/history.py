"""Every change to a payment, written by the database itself (migration 0021's
triggers), so no code path, a future one or a hand-written UPDATE included, can move
a payment without leaving its trace. Append-only: the database refuses UPDATE and
DELETE on it, as it does on audit_log."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, BigIntId, UTCDateTime


class PaymentChange(Base):
    __tablename__ = "payment_history"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    payment_id: Mapped[int] = mapped_column(BigInteger())
    operation: Mapped[str] = mapped_column(String(10))             # insert, update, delete
    old_status: Mapped[str | None] = mapped_column(String(20))
    new_status: Mapped[str | None] = mapped_column(String(20))
    old_amount: Mapped[int | None] = mapped_column(BigInteger())
    new_amount: Mapped[int | None] = mapped_column(BigInteger())
    currency: Mapped[str | None] = mapped_column(String(10))
    event_id: Mapped[str | None] = mapped_column(String(255))      # the provider's event
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_payment_history_payment_id", "payment_id", "id"),)


def history(session: Session, payment_id: int) -> list[PaymentChange]:
    """A payment's changes, oldest first."""
    return list(session.scalars(select(PaymentChange).where(
        PaymentChange.payment_id == payment_id).order_by(PaymentChange.id)))

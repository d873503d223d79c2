"""Paystack: charge, transfer and refund events, and the transaction verify API."""
from __future__ import annotations

import datetime as dt
from typing import Any

from payments.ledger import FAILED, PENDING, REFUNDED, SUCCEEDED, PaymentUpdate
from payments.provider import Provider, amount, currency, json_object, text
from store.payloads import PayloadError, parse_instant

EVENT_STATUSES = {
    "charge.success": SUCCEEDED,
    "transfer.success": SUCCEEDED,
    "transfer.failed": FAILED,
    "transfer.reversed": REFUNDED,
    "refund.processed": REFUNDED,
    "refund.pending": PENDING,
}
API_STATUSES = {
    "success": SUCCEEDED, "failed": FAILED, "abandoned": FAILED, "reversed": REFUNDED,
    "ongoing": PENDING, "pending": PENDING, "processing": PENDING, "queued": PENDING,
}


def read_event(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    event_name = text(json_object(payload).get("event"))
    status = EVENT_STATUSES.get(event_name)
    if status is None:
        return None
    data = json_object(payload, "data")
    reference = (text(data.get("transaction_reference")) if event_name.startswith("refund.")
                 else None) or text(data.get("reference"))
    if reference is None:
        raise PayloadError("the event names no reference")
    candidates = (data.get("updated_at"), data.get("updatedAt"), data.get("paid_at"),
                  data.get("created_at"))
    occurred = next((t for t in map(parse_instant, candidates) if t), received_at)
    return PaymentUpdate(
        provider=provider, reference=reference, status=status, occurred_at=occurred,
        event_id=_event_id(data.get("id")), amount=amount(data.get("amount")),
        currency=currency(data.get("currency")))


def _event_id(value: Any) -> str:
    # Paystack sends a numeric id; a string one is taken if it can be stored as sent.
    number = amount(value)
    return str(number) if number is not None else text(value) or ""


def read_status(body: Any) -> str | None:
    data = body.get("data") if isinstance(body, dict) else None
    return API_STATUSES.get(text(data.get("status"))) if isinstance(data, dict) else None


PROVIDER = Provider(
    name="paystack", read_event=read_event,
    status_path="/transaction/verify/{reference}", read_status=read_status,
    api_base_setting="PAYSTACK_API_BASE", default_api_base="https://api.paystack.co",
    api_key_setting="PAYSTACK_SECRET_KEY")

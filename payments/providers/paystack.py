"""Paystack: `x-paystack-signature`, hex HMAC-SHA512 of the body (no timestamp, no id);
charge, transfer and refund events; the transaction verify API."""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Mapping

from payments.ledger import FAILED, PENDING, REFUNDED, SUCCEEDED, PaymentUpdate
from payments.provider import Provider, amount, currency, json_object, text
from store.payloads import PayloadError, parse_instant
from store.signatures import (
    TEST_EVENT_TYPE,
    Scheme,
    check_hmac,
    hmac_digest,
    json_bytes,
    key_by_body_hash,
    test_id,
    type_from_json_field,
)

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


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    check_hmac(source, headers, "x-paystack-signature", body, algorithm=hashlib.sha512)


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    body = json_bytes({"event": TEST_EVENT_TYPE, "data": {"reference": test_id("")}})
    digest = hmac_digest(source.secrets[0], body, hashlib.sha512).hex()
    return body, {"x-paystack-signature": digest, "Content-Type": "application/json"}


# Paystack resends the identical body and sends no event id: the body is the identity.
SCHEME = Scheme("paystack", verify, event_key=key_by_body_hash,
                event_type=type_from_json_field("event"), test_delivery=test_delivery)


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
    name="paystack", scheme=SCHEME, read_event=read_event,
    status_path="/transaction/verify/{reference}", read_status=read_status,
    api_base_setting="PAYSTACK_API_BASE", default_api_base="https://api.paystack.co",
    api_key_setting="PAYSTACK_SECRET_KEY")

"""Razorpay: `X-Razorpay-Signature`, the hex HMAC-SHA256 of the raw body with the
webhook secret; `x-razorpay-event-id` identifies the delivery (the same on every
retry). Nothing signed carries a time, so deduplication is the replay defence.

Events name the payment under payload.payment.entity (a refund under
payload.refund.entity, with its payment_id); the Payments API
(`GET /v1/payments/{id}`) answers with HTTP basic auth, the key id and key secret.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from payments.ledger import FAILED, PENDING, REFUNDED, SUCCEEDED, PaymentUpdate
from payments.provider import Provider, amount, basic, currency, json_object, text
from store.payloads import PayloadError, parse_instant
from store.signatures import (
    TEST_EVENT_TYPE,
    Scheme,
    check_hmac,
    hmac_digest,
    json_bytes,
    key_from_header,
    test_id,
    type_from_json_field,
)

EVENT_STATUSES = {
    "payment.authorized": PENDING,
    "payment.captured": SUCCEEDED,
    "order.paid": SUCCEEDED,
    "payment.failed": FAILED,
    "refund.processed": REFUNDED,
}
API_STATUSES = {"created": PENDING, "authorized": PENDING, "captured": SUCCEEDED,
                "failed": FAILED, "refunded": REFUNDED}


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    check_hmac(source, headers, "X-Razorpay-Signature", body)


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    body = json_bytes({"entity": "event", "event": TEST_EVENT_TYPE, "contains": [],
                       "payload": {}, "created_at": int(now)})
    return body, {"X-Razorpay-Signature": hmac_digest(source.secrets[0], body).hex(),
                  "x-razorpay-event-id": test_id(""), "Content-Type": "application/json"}


SCHEME = Scheme("razorpay", verify, event_key=key_from_header("x-razorpay-event-id"),
                event_type=type_from_json_field("event"), test_delivery=test_delivery)


def read_event(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    event = json_object(payload)
    name = text(event.get("event"))
    status = EVENT_STATUSES.get(name)
    if status is None:
        return None
    if name == "refund.processed":
        refund = json_object(event, "payload", "refund", "entity")
        reference, money = text(refund.get("payment_id")), {}
    else:
        money = json_object(event, "payload", "payment", "entity")
        reference = text(money.get("id"))
    if reference is None:
        raise PayloadError("the event names no payment")
    return PaymentUpdate(
        provider=provider, reference=reference, status=status,
        occurred_at=parse_instant(event.get("created_at")) or received_at,
        event_id=f"{name}:{reference}", amount=amount(money.get("amount")),
        currency=currency(money.get("currency")))


def read_status(body: Any) -> str | None:
    return API_STATUSES.get(text(body.get("status"))) if isinstance(body, dict) else None


PROVIDER = Provider(
    name="razorpay", scheme=SCHEME, read_event=read_event,
    status_path="/v1/payments/{reference}", read_status=read_status,
    api_base_setting="RAZORPAY_API_BASE", default_api_base="https://api.razorpay.com",
    api_key_setting="RAZORPAY_KEY_ID", api_credential_settings=("RAZORPAY_KEY_SECRET",),
    authorize=basic)

"""Square: `x-square-hmacsha256-signature`, the base64 HMAC-SHA256, keyed with the
subscription's signature key, of the notification URL followed by the raw body. The
URL must be the one Square posts to, so a source gives it as `public_url`, as a
Twilio source does. `event_id` identifies the event (the same on every retry).

`payment.created` / `payment.updated` carry data.object.payment, whose status
(APPROVED, PENDING, COMPLETED, CANCELED, FAILED) is mapped onto the ledger;
`refund.created` / `refund.updated` carry data.object.refund, a COMPLETED one
refunding its payment_id. The Payments API (`GET /v2/payments/{id}`) takes a Bearer
access token.
"""
from __future__ import annotations

import base64
import datetime as dt
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
    key_from_json_field,
    public_url_option,
    test_id,
    type_from_json_field,
    unbase64,
)

PAYMENT_STATUSES = {"APPROVED": PENDING, "PENDING": PENDING, "COMPLETED": SUCCEEDED,
                    "CANCELED": FAILED, "FAILED": FAILED}


def _signed(source, body: bytes) -> bytes:
    return source.options["public_url"].encode("utf-8") + body


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    check_hmac(source, headers, "x-square-hmacsha256-signature", _signed(source, body),
               decode=unbase64)


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    body = json_bytes({"type": TEST_EVENT_TYPE, "event_id": test_id(""),
                       "created_at": dt.datetime.fromtimestamp(now, dt.timezone.utc)
                       .isoformat(), "data": {}})
    digest = base64.b64encode(hmac_digest(source.secrets[0], _signed(source, body))).decode()
    return body, {"x-square-hmacsha256-signature": digest, "Content-Type": "application/json"}


SCHEME = Scheme("square", verify, event_key=key_from_json_field("event_id"),
                event_type=type_from_json_field("type"),
                parse_options=public_url_option("Square"), test_delivery=test_delivery)


def read_event(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    event = json_object(payload)
    kind = text(event.get("type")) or ""
    if kind.startswith("payment."):
        payment = json_object(event, "data", "object", "payment")
        status, reference = PAYMENT_STATUSES.get(text(payment.get("status"))), payment.get("id")
        money = payment.get("amount_money")
    elif kind.startswith("refund."):
        refund = json_object(event, "data", "object", "refund")
        status = REFUNDED if text(refund.get("status")) == "COMPLETED" else None
        reference, money = refund.get("payment_id"), None
    else:
        return None
    if status is None:
        return None
    if text(reference) is None:
        raise PayloadError("the event names no payment")
    money = money if isinstance(money, dict) else {}
    return PaymentUpdate(
        provider=provider, reference=text(reference), status=status,
        occurred_at=parse_instant(event.get("created_at")) or received_at,
        event_id=text(event.get("event_id")) or "", amount=amount(money.get("amount")),
        currency=currency(money.get("currency")))


def read_status(body: Any) -> str | None:
    payment = body.get("payment") if isinstance(body, dict) else None
    return PAYMENT_STATUSES.get(text(payment.get("status"))) \
        if isinstance(payment, dict) else None


PROVIDER = Provider(
    name="square", scheme=SCHEME, read_event=read_event,
    status_path="/v2/payments/{reference}", read_status=read_status,
    api_base_setting="SQUARE_API_BASE", default_api_base="https://connect.squareup.com",
    api_key_setting="SQUARE_ACCESS_TOKEN")

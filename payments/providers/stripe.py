"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 of "{t}.{body}"; PaymentIntent
and charge events; the PaymentIntents API."""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from payments.ledger import FAILED, PENDING, REFUNDED, SUCCEEDED, PaymentUpdate
from payments.provider import Provider, amount, currency, json_object, text
from store.payloads import PayloadError, parse_instant
from store.signatures import (
    TEST_EVENT_TYPE,
    InvalidSignature,
    MissingSignature,
    Scheme,
    any_matches,
    check_tolerance,
    hmac_digest,
    json_bytes,
    key_from_json_field,
    parse_timestamp,
    test_id,
    type_from_json_field,
    unhex,
)

EVENT_STATUSES = {
    "payment_intent.created": PENDING,
    "payment_intent.processing": PENDING,
    "payment_intent.requires_action": PENDING,
    "payment_intent.succeeded": SUCCEEDED,
    "payment_intent.payment_failed": FAILED,
    "payment_intent.canceled": FAILED,
    "charge.refunded": REFUNDED,
}
API_STATUSES = {
    "succeeded": SUCCEEDED, "canceled": FAILED, "requires_payment_method": FAILED,
    "processing": PENDING, "requires_action": PENDING, "requires_confirmation": PENDING,
    "requires_capture": PENDING,
}


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    header = headers.get("Stripe-Signature")
    if not header:
        raise MissingSignature("Stripe-Signature header missing")
    timestamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            digest = unhex(value)
            if digest is not None:
                signatures.append(digest)
    when = parse_timestamp(timestamp)
    if not signatures:
        raise InvalidSignature("no v1 signature")
    signed = timestamp.encode("ascii") + b"." + body
    # Stripe uses the whole "whsec_..." string as the key's UTF-8 bytes.
    if not any_matches([hmac_digest(secret, signed) for secret in source.secrets], signatures):
        raise InvalidSignature("no signature matched")
    check_tolerance(when, now, source.tolerance)


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    body = json_bytes({"id": test_id("evt_"), "object": "event", "type": TEST_EVENT_TYPE,
                       "created": int(now), "livemode": False,
                       "data": {"object": {"object": "sluice_test"}}})
    digest = hmac_digest(source.secrets[0], f"{int(now)}.".encode() + body).hex()
    return body, {"Stripe-Signature": f"t={int(now)},v1={digest}",
                  "Content-Type": "application/json"}


SCHEME = Scheme("stripe", verify, event_key=key_from_json_field("id"),
                event_type=type_from_json_field("type"), test_delivery=test_delivery)


def read_event(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    event = json_object(payload)
    status = EVENT_STATUSES.get(text(event.get("type")))
    if status is None:
        return None  # an event type we do not act on
    obj = json_object(event, "data", "object")
    reference = (text(obj.get("payment_intent")) if event["type"] == "charge.refunded"
                 else None) or text(obj.get("id"))
    if reference is None:
        raise PayloadError("the event names no payment")
    return PaymentUpdate(
        provider=provider, reference=reference, status=status,
        occurred_at=parse_instant(event.get("created")) or received_at,
        event_id=text(event.get("id")) or "", amount=amount(obj.get("amount")),
        currency=currency(obj.get("currency")))


def read_status(body: Any) -> str | None:
    return API_STATUSES.get(text(body.get("status"))) if isinstance(body, dict) else None


PROVIDER = Provider(
    name="stripe", scheme=SCHEME, read_event=read_event,
    status_path="/v1/payment_intents/{reference}", read_status=read_status,
    api_base_setting="STRIPE_API_BASE", default_api_base="https://api.stripe.com",
    api_key_setting="STRIPE_API_KEY")

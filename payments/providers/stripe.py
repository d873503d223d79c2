"""Stripe: PaymentIntent and charge events, and the PaymentIntents API."""
from __future__ import annotations

import datetime as dt
from typing import Any

from payments.ledger import FAILED, PENDING, REFUNDED, SUCCEEDED, PaymentUpdate
from payments.provider import Provider, amount, currency, json_object, text
from store.payloads import PayloadError, parse_instant

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
    name="stripe", read_event=read_event,
    status_path="/v1/payment_intents/{reference}", read_status=read_status,
    api_base_setting="STRIPE_API_BASE", default_api_base="https://api.stripe.com",
    api_key_setting="STRIPE_API_KEY")

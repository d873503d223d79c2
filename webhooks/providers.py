"""Read payment updates out of Stripe and Paystack event payloads."""
from __future__ import annotations

import datetime as dt
from typing import Any

from webhooks.payments import FAILED, PENDING, REFUNDED, SUCCEEDED, PaymentUpdate


class PayloadError(ValueError):
    """The payload can never be handled: retrying will not help."""


STRIPE_STATUSES = {
    "payment_intent.created": PENDING,
    "payment_intent.processing": PENDING,
    "payment_intent.requires_action": PENDING,
    "payment_intent.succeeded": SUCCEEDED,
    "payment_intent.payment_failed": FAILED,
    "payment_intent.canceled": FAILED,
    "charge.refunded": REFUNDED,
}

PAYSTACK_STATUSES = {
    "charge.success": SUCCEEDED,
    "transfer.success": SUCCEEDED,
    "transfer.failed": FAILED,
    "transfer.reversed": REFUNDED,
    "refund.processed": REFUNDED,
    "refund.pending": PENDING,
}


def _object(payload: Any, *path: str) -> dict:
    node = payload
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise PayloadError(f"missing object {'.'.join(path)}")
    return node


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 255 else None


def _amount(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_instant(value: Any) -> dt.datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10 ** 11:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return None


def stripe_update(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    if not isinstance(payload, dict):
        raise PayloadError("the event is not a JSON object")
    status = STRIPE_STATUSES.get(payload.get("type"))
    if status is None:
        return None  # an event type we do not act on
    obj = _object(payload, "data", "object")
    reference = (_text(obj.get("payment_intent")) if payload["type"] == "charge.refunded"
                 else None) or _text(obj.get("id"))
    if reference is None:
        raise PayloadError("the event names no payment")
    return PaymentUpdate(
        provider=provider, reference=reference, status=status,
        occurred_at=parse_instant(payload.get("created")) or received_at,
        event_id=_text(payload.get("id")) or "", amount=_amount(obj.get("amount")),
        currency=_text(obj.get("currency")))


def paystack_update(payload: Any, provider: str,
                    received_at: dt.datetime) -> PaymentUpdate | None:
    if not isinstance(payload, dict):
        raise PayloadError("the event is not a JSON object")
    event = payload.get("event")
    status = PAYSTACK_STATUSES.get(event)
    if status is None:
        return None
    data = _object(payload, "data")
    reference = (_text(data.get("transaction_reference")) if str(event).startswith("refund.")
                 else None) or _text(data.get("reference"))
    if reference is None:
        raise PayloadError("the event names no reference")
    candidates = (data.get("updated_at"), data.get("updatedAt"), data.get("paid_at"),
                  data.get("created_at"))
    occurred = next((t for t in map(parse_instant, candidates) if t), received_at)
    return PaymentUpdate(
        provider=provider, reference=reference, status=status, occurred_at=occurred,
        event_id=str(data.get("id") or ""), amount=_amount(data.get("amount")),
        currency=_text(data.get("currency")))


PAYMENT_READERS = {"stripe": stripe_update, "paystack": paystack_update}

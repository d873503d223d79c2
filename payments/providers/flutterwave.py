"""Flutterwave (v3): `verif-hash` carries the secret hash set in the dashboard, as it
is: a static token, not a signature over the content, so its deliveries are of
`token` trust and are confirmed with the API before they change the ledger.

`charge.completed` names the transaction (data.id) and its status (successful,
failed, pending). The handler asks `GET /v3/transactions/{id}/verify` (Bearer secret
key) and the ledger takes its status, amount and currency; an amount or currency that
disagrees with the delivery is refused. Flutterwave gives amounts in major units
(`100.5` NGN), turned into the ledger's minor units exactly. The event key is the
event name and the transaction id.
"""
from __future__ import annotations

import datetime as dt
import hmac
from typing import Any, Mapping

from payments.ledger import FAILED, PENDING, SUCCEEDED, PaymentUpdate
from payments.provider import (
    Confirmation,
    Provider,
    amount,
    currency,
    json_object,
    minor_units,
    text,
)
from store.payloads import PayloadError, parse_instant
from store.signatures import (
    TEST_EVENT_TYPE,
    TOKEN,
    InvalidPayload,
    InvalidSignature,
    MissingSignature,
    Scheme,
    checked_key,
    json_bytes,
    test_id,
    type_from_json_field,
)

STATUSES = {"successful": SUCCEEDED, "failed": FAILED, "pending": PENDING}
EVENTS = ("charge.completed",)


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    header = headers.get("verif-hash")
    if not header:
        raise MissingSignature("verif-hash header missing")
    given = header.strip().encode("utf-8", "replace")
    found = False
    for secret in source.secrets:  # every one compared, so timing tells none apart
        found |= hmac.compare_digest(given, secret)
    if not found:
        raise InvalidSignature("verif-hash did not match")


def event_key(source, headers: Mapping[str, str], body: bytes, payload: Any) -> str:
    data = payload.get("data") if isinstance(payload, dict) else None
    number = amount(data.get("id")) if isinstance(data, dict) else None
    event = text(payload.get("event"), 100)
    if number is None or event is None:
        raise InvalidPayload("the event needs an event name and a numeric data.id")
    return checked_key(f"{event}:{number}", "an event name and data.id")


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    body = json_bytes({"event": TEST_EVENT_TYPE, "data": {"id": int(now * 1000) % 10 ** 12,
                                                          "tx_ref": test_id("")}})
    return body, {"verif-hash": source.secrets[0].decode(), "Content-Type": "application/json"}


SCHEME = Scheme("flutterwave", verify, event_key=event_key,
                event_type=type_from_json_field("event"), trust=TOKEN,
                test_delivery=test_delivery)


def read_event(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    event = json_object(payload)
    if text(event.get("event")) not in EVENTS:
        return None
    data = json_object(event, "data")
    status = STATUSES.get(text(data.get("status")))
    reference = amount(data.get("id"))
    if status is None:
        return None
    if reference is None:
        raise PayloadError("the event names no transaction")
    code = currency(data.get("currency"))
    return PaymentUpdate(
        provider=provider, reference=str(reference), status=status,
        occurred_at=parse_instant(data.get("created_at")) or received_at,
        event_id=f"charge.completed:{reference}", amount=minor_units(data.get("amount"), code),
        currency=code)


def read_confirmation(body: Any) -> Confirmation | None:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or STATUSES.get(text(data.get("status"))) is None:
        return None
    code = currency(data.get("currency"))
    return Confirmation(STATUSES[data["status"]], minor_units(data.get("amount"), code), code)


def read_status(body: Any) -> str | None:
    confirmation = read_confirmation(body)
    return confirmation.status if confirmation else None


PROVIDER = Provider(
    name="flutterwave", scheme=SCHEME, read_event=read_event,
    status_path="/v3/transactions/{reference}/verify", read_status=read_status,
    api_base_setting="FLUTTERWAVE_API_BASE", default_api_base="https://api.flutterwave.com",
    api_key_setting="FLUTTERWAVE_SECRET_KEY", confirm=True,
    read_confirmation=read_confirmation)

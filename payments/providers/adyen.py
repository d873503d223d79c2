"""Adyen (standard notifications): a delivery is a batch, `notificationItems`, each
item a `NotificationRequestItem` signed on its own. Its `additionalData.hmacSignature`
is the base64 HMAC-SHA256, keyed with the hex-decoded HMAC key, of eight fields
joined by ":" (pspReference, originalReference, merchantAccountCode,
merchantReference, amount value, amount currency, eventCode, success), not of the
body. So each item is verified, stored and handled as an event of its own, as a
one-item batch in Adyen's own format, and a bad item refuses only itself. Adyen wants
the body `[accepted]` in answer, or it sends the batch again.

An item's key is its pspReference, eventCode and success: Adyen resends an item
unchanged. AUTHORISATION and CAPTURE move the payment named by pspReference;
CANCELLATION and REFUND the one named by originalReference. Amounts are minor units.
Adyen has no status API to ask (it relies on these notifications), so its payments
are not reconciled.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any, Mapping

from payments.ledger import FAILED, REFUNDED, SUCCEEDED, PaymentUpdate
from payments.provider import Provider, amount, currency, text
from store.payloads import PayloadError, identifier, parse_instant
from store.signatures import (
    MAX_EVENT_TYPE,
    TEST_EVENT_TYPE,
    InvalidPayload,
    InvalidSignature,
    MissingSignature,
    Reply,
    Scheme,
    SignatureError,
    any_matches,
    checked_key,
    hmac_digest,
    json_bytes,
    test_id,
    unbase64,
)
from store.signatures import (
    json_object as parse_object,
)

SIGNED_FIELDS = ("pspReference", "originalReference", "merchantAccountCode",
                 "merchantReference", "value", "currency", "eventCode", "success")
MAX_ITEMS = 100
# eventCode -> (the status a successful item means, whether it names the original payment)
EVENT_STATUSES = {"AUTHORISATION": (SUCCEEDED, False), "CAPTURE": (SUCCEEDED, False),
                  "CANCELLATION": (FAILED, True), "REFUND": (REFUNDED, True)}


def _keys(source) -> list[bytes]:
    keys = []
    for secret in source.secrets:  # the HMAC key is given in hex, as Adyen shows it
        try:
            keys.append(binascii.unhexlify(secret.strip()))
        except (binascii.Error, ValueError):
            continue
    return keys


def _field(item: Mapping[str, Any], name: str) -> str:
    if name in ("value", "currency"):
        money = item.get("amount")
        value = money.get(name) if isinstance(money, dict) else None
    else:
        value = item.get(name)
    if value is None:
        return ""
    if isinstance(value, bool):  # Adyen sends "true"; a JSON true means the same
        return "true" if value else "false"
    return str(value)


def signing_string(item: Mapping[str, Any]) -> bytes:
    return ":".join(_field(item, name) for name in SIGNED_FIELDS).encode("utf-8")


def _items(payload: Any) -> list[dict]:
    entries = payload.get("notificationItems") if isinstance(payload, dict) else None
    if not isinstance(entries, list) or not entries or len(entries) > MAX_ITEMS:
        raise InvalidPayload(f"the body needs 1 to {MAX_ITEMS} notificationItems")
    items = [entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
             for entry in entries]
    if not all(isinstance(item, dict) for item in items):
        raise InvalidPayload("each notificationItems entry needs a NotificationRequestItem")
    return items


def _check_item(source, item: dict) -> None:
    extra = item.get("additionalData")
    signature = extra.get("hmacSignature") if isinstance(extra, dict) else None
    if not isinstance(signature, str) or not signature:
        raise MissingSignature("additionalData.hmacSignature missing")
    digest = unbase64(signature.strip())
    try:
        message = signing_string(item)
    except UnicodeEncodeError:  # a lone surrogate: nothing Adyen could have signed
        raise InvalidSignature("the item's fields cannot be signed as sent") from None
    if digest is None or not any_matches([hmac_digest(key, message) for key in _keys(source)],
                                         [digest]):
        raise InvalidSignature("hmacSignature did not match")


def split(source, headers: Mapping[str, str], body: bytes,
          now: float) -> list[tuple[bytes, SignatureError | None]]:
    """Each item as a one-item batch, with its verdict. InvalidPayload if the body is
    no batch at all."""
    payload = parse_object(body)
    live = payload.get("live")
    return [(json_bytes({"live": live, "notificationItems": [{"NotificationRequestItem": item}]}),
             _verdict(source, item)) for item in _items(payload)]


def _verdict(source, item: dict) -> SignatureError | None:
    try:
        _check_item(source, item)
    except SignatureError as exc:
        return exc
    return None


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    """A whole batch, every item of it (the split path verifies item by item)."""
    try:
        items = _items(parse_object(body))
    except InvalidPayload:
        raise MissingSignature("not an Adyen notification batch") from None
    for item in items:
        _check_item(source, item)


def _only_item(payload: Any) -> dict:
    return _items(payload)[0]


def event_key(source, headers: Mapping[str, str], body: bytes, payload: Any) -> str:
    item = _only_item(payload)
    parts = [identifier(item.get(name), 100) for name in ("pspReference", "eventCode")]
    if not all(parts):
        raise InvalidPayload("the item needs a pspReference and an eventCode")
    return checked_key(":".join([*parts, _field(item, "success")]), "a pspReference")


def event_type(headers: Mapping[str, str], payload: Any) -> str | None:
    return identifier(_only_item(payload).get("eventCode"), MAX_EVENT_TYPE)


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    item = {"pspReference": test_id(""), "merchantAccountCode": "SluiceTest",
            "merchantReference": test_id(""), "amount": {"value": 0, "currency": "EUR"},
            "eventCode": TEST_EVENT_TYPE, "success": "true",
            "eventDate": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat()}
    item["additionalData"] = {"hmacSignature": base64.b64encode(
        hmac_digest(_keys(source)[0], signing_string(item))).decode()}
    body = json_bytes({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]})
    return body, {"Content-Type": "application/json"}


SCHEME = Scheme("adyen", verify, event_key=event_key, event_type=event_type,
                test_delivery=test_delivery, split=split,
                reply=Reply("[accepted]", mimetype="text/plain"))


def read_event(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    item = _only_item(payload)
    known = EVENT_STATUSES.get(text(item.get("eventCode")))
    if known is None:
        return None
    status, names_original = known
    success = _field(item, "success") == "true"
    if not success:
        if text(item.get("eventCode")) != "AUTHORISATION":
            return None  # a failed capture, refund or cancellation changes no payment
        status = FAILED
    reference = text(item.get("originalReference" if names_original else "pspReference"))
    if reference is None:
        raise PayloadError("the item names no payment")
    money = item.get("amount") if isinstance(item.get("amount"), dict) else {}
    return PaymentUpdate(
        provider=provider, reference=reference, status=status,
        occurred_at=parse_instant(item.get("eventDate")) or received_at,
        event_id=f"{text(item.get('pspReference'))}:{text(item.get('eventCode'))}",
        amount=None if names_original else amount(money.get("value")),
        currency=currency(money.get("currency")))


PROVIDER = Provider(name="adyen", scheme=SCHEME, read_event=read_event)

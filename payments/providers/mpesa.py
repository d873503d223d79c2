"""M-Pesa (Safaricom Daraja): STK push callbacks and C2B confirmations.

Daraja signs nothing and lets no header be set, so a source is authenticated by an
unguessable token in its URL (`POST /webhooks/<source>/<token>`, the token from the
variable `path_token_env` names, compared in constant time) and, if it says so, by
the sender's address (`allowed_ips`, any source may). That proves the sender knew the
URL, not what it says: `token` trust, and every STK result is confirmed with the STK
Push Query API before it changes the ledger.

The query (`POST /mpesa/stkpushquery/v1/query`) takes the shortcode, a password (the
base64 of shortcode, passkey and a timestamp) and the CheckoutRequestID, with a
Bearer token from `GET /oauth/v1/generate?grant_type=client_credentials` (HTTP basic
auth with the consumer key and secret), cached until it expires. ResultCode 0 is a
payment made; any other a payment that failed (1032: cancelled by the customer).
The query names no amount, and the ledger takes nothing from the callback but its
CheckoutRequestID: an M-Pesa payment's amount stays unknown (None) in the ledger
(the merchant's system, which started the checkout, knows what it asked for).

A C2B confirmation (keyed by TransID) is stored, deduplicated and replayable, but
moves no payment: Daraja answers its Transaction Status query by callback only, so
Sluice cannot confirm one in the handler. Daraja wants
`{"ResultCode": 0, "ResultDesc": "Accepted"}` once a callback is stored.
"""
from __future__ import annotations

import base64
import datetime as dt
import hmac
from typing import Any, Mapping
from urllib.parse import urlsplit

from payments.ledger import FAILED, SUCCEEDED, PaymentUpdate
from payments.provider import (
    Confirmation,
    OAuthClientCredentials,
    Provider,
    StatusRequest,
    minor_units,
    text,
)
from store.payloads import PayloadError
from store.signatures import (
    TEST_EVENT_TYPE,
    TOKEN,
    InvalidPayload,
    InvalidSignature,
    MissingSignature,
    Reply,
    Scheme,
    checked_key,
    json_bytes,
    test_id,
)

STK, C2B = "stk_callback", "c2b_confirmation"
CURRENCY = "KES"
TOKEN_PATH = "/oauth/v1/generate?grant_type=client_credentials"


def path_token(url: str) -> str:
    """The last segment of the requested path: /webhooks/<source>/<token>."""
    path = urlsplit(url).path.rstrip("/")
    return path.rsplit("/", 2)[-1] if path.count("/") >= 3 else ""


def verify(source, headers: Mapping[str, str], body: bytes, now: float, url: str = "") -> None:
    token = path_token(url).encode("utf-8", "replace")
    if not token:
        raise MissingSignature("the URL carries no token")
    found = False
    for secret in source.secrets:  # every one compared: timing tells none apart
        found |= hmac.compare_digest(token, secret)
    if not found:
        raise InvalidSignature("the URL's token did not match")


def _stk(payload: Any) -> dict | None:
    body = payload.get("Body") if isinstance(payload, dict) else None
    callback = body.get("stkCallback") if isinstance(body, dict) else None
    return callback if isinstance(callback, dict) else None


def event_key(source, headers: Mapping[str, str], body: bytes, payload: Any) -> str:
    callback = _stk(payload)
    if callback is not None:
        return checked_key(callback.get("CheckoutRequestID"), "a CheckoutRequestID")
    if isinstance(payload.get("TransID"), str):
        return checked_key(payload["TransID"], "a TransID")
    raise InvalidPayload("the body is neither an STK callback nor a C2B confirmation")


def event_type(headers: Mapping[str, str], payload: Any) -> str | None:
    if _stk(payload) is not None:
        return STK
    return C2B if isinstance(payload, dict) and "TransID" in payload else None


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    # an STK callback of a checkout nobody started: the API is never asked (no
    # ResultCode Sluice acts on), so it is stored and processed with no effect
    body = json_bytes({"Body": {"stkCallback": {
        "MerchantRequestID": test_id(""), "CheckoutRequestID": test_id("ws_CO_"),
        "ResultCode": TEST_EVENT_TYPE, "ResultDesc": "Sluice test delivery"}}})
    return body, {"Content-Type": "application/json"}


SCHEME = Scheme("mpesa", verify, event_key=event_key, event_type=event_type, trust=TOKEN,
                test_delivery=test_delivery, token_in_path=True,
                reply=Reply('{"ResultCode": 0, "ResultDesc": "Accepted"}'))


def _metadata(callback: dict) -> dict[str, Any]:
    meta = callback.get("CallbackMetadata")
    items = meta.get("Item") if isinstance(meta, dict) else None
    return {item.get("Name"): item.get("Value")
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and isinstance(item.get("Name"), str)}


def read_event(payload: Any, provider: str, received_at: dt.datetime) -> PaymentUpdate | None:
    callback = _stk(payload)
    if callback is None:
        return None  # a C2B confirmation: stored, not confirmable here (see above)
    code = callback.get("ResultCode")
    if isinstance(code, bool) or not isinstance(code, int):
        return None  # not a result (the test delivery), nothing to confirm
    reference = text(callback.get("CheckoutRequestID"))
    if reference is None:
        raise PayloadError("the callback names no CheckoutRequestID")
    return PaymentUpdate(
        provider=provider, reference=reference, status=SUCCEEDED if code == 0 else FAILED,
        occurred_at=received_at, event_id=f"{STK}:{reference}",
        amount=minor_units(_metadata(callback).get("Amount"), CURRENCY), currency=CURRENCY)


def status_request(reference: str, credentials: Mapping[str, str], now: float) -> StatusRequest:
    stamp = dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(hours=3)))  # Nairobi
    stamp = stamp.strftime("%Y%m%d%H%M%S")
    shortcode, passkey = credentials["MPESA_SHORTCODE"], credentials["MPESA_PASSKEY"]
    password = base64.b64encode(f"{shortcode}{passkey}{stamp}".encode()).decode()
    return StatusRequest("POST", "/mpesa/stkpushquery/v1/query", {
        "BusinessShortCode": shortcode, "Password": password, "Timestamp": stamp,
        "CheckoutRequestID": reference})


def read_confirmation(body: Any) -> Confirmation | None:
    code = body.get("ResultCode") if isinstance(body, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    if not isinstance(code, str) or not code.isdigit():
        return None
    # the query names no amount, and the callback's is not confirmed: unknown
    return Confirmation(SUCCEEDED if code == "0" else FAILED, amount=None, currency=CURRENCY)


def read_status(body: Any) -> str | None:
    confirmation = read_confirmation(body)
    return confirmation.status if confirmation else None


PROVIDER = Provider(
    name="mpesa", scheme=SCHEME, read_event=read_event,
    status_path="/mpesa/stkpushquery/v1/query", status_request=status_request,
    read_status=read_status, read_confirmation=read_confirmation, confirm=True,
    api_base_setting="MPESA_API_BASE", default_api_base="https://api.safaricom.co.ke",
    api_key_setting="MPESA_CONSUMER_KEY",
    api_credential_settings=("MPESA_CONSUMER_SECRET", "MPESA_SHORTCODE", "MPESA_PASSKEY"),
    authorize=OAuthClientCredentials(TOKEN_PATH, secret="MPESA_CONSUMER_SECRET"))

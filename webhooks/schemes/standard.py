"""Standard Webhooks: webhook-id, webhook-timestamp, `webhook-signature: v1,<base64>`."""
from __future__ import annotations

import base64
from typing import Mapping

from store.signatures import (
    TEST_EVENT_TYPE,
    InvalidSignature,
    MissingSignature,
    Scheme,
    any_matches,
    check_tolerance,
    hmac_digest,
    json_bytes,
    key_from_header,
    parse_timestamp,
    test_id,
    type_from_json_field,
    unbase64,
)


def _key(secret: bytes) -> bytes | None:
    # Unlike Stripe, the part after "whsec_" is the base64 of the key.
    text = secret.decode("utf-8", "replace")
    return unbase64(text[len("whsec_"):] if text.startswith("whsec_") else text)


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    header = headers.get("webhook-signature")
    if not (msg_id and timestamp and header):
        raise MissingSignature("webhook-id, webhook-timestamp and webhook-signature required")
    when = parse_timestamp(timestamp)
    signatures = []
    for entry in header.split():
        version, _, value = entry.partition(",")
        digest = unbase64(value) if version == "v1" else None
        if digest is not None:
            signatures.append(digest)
    if not signatures:
        raise InvalidSignature("no v1 signature")
    try:
        signed = f"{msg_id}.{timestamp}.".encode("utf-8") + body
    except UnicodeEncodeError:
        raise InvalidSignature("malformed webhook-id") from None
    keys = [key for key in map(_key, source.secrets) if key]
    if not any_matches([hmac_digest(key, signed) for key in keys], signatures):
        raise InvalidSignature("no signature matched")
    check_tolerance(when, now, source.tolerance)


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    msg_id, timestamp = test_id("msg_"), str(int(now))
    body = json_bytes({"type": TEST_EVENT_TYPE, "timestamp": timestamp, "data": {}})
    digest = hmac_digest(_key(source.secrets[0]) or b"", f"{msg_id}.{timestamp}.".encode() + body)
    return body, {"webhook-id": msg_id, "webhook-timestamp": timestamp,
                  "webhook-signature": "v1," + base64.b64encode(digest).decode(),
                  "Content-Type": "application/json"}


SCHEME = Scheme("standard", verify, event_key=key_from_header("webhook-id"),
                event_type=type_from_json_field("type"), test_delivery=test_delivery)

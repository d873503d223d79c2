"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 of "{t}.{body}"."""
from __future__ import annotations

from typing import Mapping

from webhooks.schemes.base import (
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

"""Paystack: `x-paystack-signature`, hex HMAC-SHA512 of the body; no timestamp, no id."""
from __future__ import annotations

import hashlib
from typing import Mapping

from webhooks.schemes.base import (
    TEST_EVENT_TYPE,
    InvalidSignature,
    MissingSignature,
    Scheme,
    any_matches,
    hmac_digest,
    json_bytes,
    key_by_body_hash,
    test_id,
    type_from_json_field,
    unhex,
)


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    header = headers.get("x-paystack-signature")
    if not header:
        raise MissingSignature("x-paystack-signature header missing")
    digest = unhex(header.strip())
    expected = [hmac_digest(secret, body, hashlib.sha512) for secret in source.secrets]
    if digest is None or not any_matches(expected, [digest]):
        raise InvalidSignature("signature did not match")


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    body = json_bytes({"event": TEST_EVENT_TYPE, "data": {"reference": test_id("")}})
    digest = hmac_digest(source.secrets[0], body, hashlib.sha512).hex()
    return body, {"x-paystack-signature": digest, "Content-Type": "application/json"}


# Paystack resends the identical body and sends no event id: the body is the identity.
SCHEME = Scheme("paystack", verify, event_key=key_by_body_hash,
                event_type=type_from_json_field("event"), test_delivery=test_delivery)

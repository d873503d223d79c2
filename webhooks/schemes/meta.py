"""Meta (WhatsApp Cloud API): `X-Hub-Signature-256: sha256=<hex>` of the body.

Meta sends no timestamp, so deduplication is the only replay defence.
"""
from __future__ import annotations

from typing import Mapping

from webhooks.schemes.base import (
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
    header = headers.get("X-Hub-Signature-256")
    if not header:
        raise MissingSignature("X-Hub-Signature-256 header missing")
    prefix, _, value = header.strip().partition("=")
    digest = unhex(value) if prefix == "sha256" else None
    expected = [hmac_digest(secret, body) for secret in source.secrets]
    if digest is None or not any_matches(expected, [digest]):
        raise InvalidSignature("signature did not match")


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    # A notification with no messages and no statuses: stored, processed, no effect.
    body = json_bytes({"object": "whatsapp_business_account", "entry": [
        {"id": test_id(""), "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp", "messages": [], "statuses": []}}]}]})
    digest = hmac_digest(source.secrets[0], body).hex()
    return body, {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


# A notification batches messages and statuses and has no id of its own; Meta
# resends the identical body, so the body is the identity (each wamid is then
# stored once by the handler).
SCHEME = Scheme("meta", verify, event_key=key_by_body_hash,
                event_type=type_from_json_field("object"), kind="whatsapp",
                test_delivery=test_delivery)

"""Every signature scheme. Adding one is a module here and one line below.

Each module declares a `Scheme` (webhooks/schemes/base.py): its verifier, its
event-key rule and its event-type rule, together.
"""
from __future__ import annotations

from typing import Mapping

from webhooks.schemes import generic_hmac, meta, paystack, standard, stripe, twilio
from webhooks.schemes.base import (
    InvalidPayload,
    InvalidSignature,
    MissingSignature,
    Scheme,
    SignatureError,
    StaleTimestamp,
)

__all__ = ["SCHEMES", "InvalidPayload", "InvalidSignature", "MissingSignature", "Scheme",
           "SignatureError", "StaleTimestamp", "verify"]

SCHEMES: dict[str, Scheme] = {scheme.name: scheme for scheme in (
    stripe.SCHEME,
    standard.SCHEME,
    paystack.SCHEME,
    meta.SCHEME,
    generic_hmac.SCHEME,
    twilio.SCHEME,
)}


def verify(source, headers: Mapping[str, str], body: bytes, now: float, url: str = "") -> None:
    """None, or a SignatureError; a source with no secret configured rejects everything.
    `url` is the full URL the sender requested, for schemes that sign it (Twilio)."""
    if not source.secrets:
        raise InvalidSignature("no secret is configured for this source")
    SCHEMES[source.scheme].verify(source, headers, body, now, url)

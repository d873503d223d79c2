"""Every signature scheme, gathered from where each is declared.

A provider's scheme lives in its provider module, beside everything else about it:
payment providers in payments/providers/ (PROVIDERS there), WhatsApp providers in
whatsapp/. The generic schemes, which any sender may use, live here, one
module each, listed in GENERIC. Adding a provider adds its scheme; nothing here
changes.
"""
from __future__ import annotations

from typing import Mapping

from payments.providers import PROVIDERS as PAYMENT_PROVIDERS
from store.signatures import (
    InvalidPayload,
    InvalidSignature,
    MissingSignature,
    Scheme,
    SignatureError,
    StaleTimestamp,
)
from webhooks.schemes import generic_hmac, github, shopify, standard
from whatsapp import PROVIDERS as WHATSAPP_PROVIDERS

__all__ = ["SCHEMES", "InvalidPayload", "InvalidSignature", "MissingSignature", "Scheme",
           "SignatureError", "StaleTimestamp", "split_batch", "verify"]

GENERIC: tuple[Scheme, ...] = (
    standard.SCHEME,
    generic_hmac.SCHEME,
    github.SCHEME,
    shopify.SCHEME,
)

SCHEMES: dict[str, Scheme] = {scheme.name: scheme for scheme in (
    *(provider.scheme for provider in PAYMENT_PROVIDERS.values()),
    *(provider.scheme for provider in WHATSAPP_PROVIDERS.values()),
    *GENERIC,
)}


def split_batch(source, headers: Mapping[str, str], body: bytes, now: float):
    """A batch delivery's items, each with its verdict (None: verified), for a scheme
    that splits (Adyen's); a source with no secret configured refuses every item."""
    if not source.secrets:
        return [(item, InvalidSignature("no secret is configured for this source"))
                for item, _ in SCHEMES[source.scheme].split(source, headers, body, now)]
    return SCHEMES[source.scheme].split(source, headers, body, now)


def verify(source, headers: Mapping[str, str], body: bytes, now: float, url: str = "") -> None:
    """None, or a SignatureError; a source with no secret configured rejects everything.
    `url` is the full URL the sender requested, for schemes that sign it (Twilio)."""
    scheme = SCHEMES[source.scheme]
    if scheme.needs_secret and not source.secrets:
        raise InvalidSignature("no secret is configured for this source")
    scheme.verify(source, headers, body, now, url)

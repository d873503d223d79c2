"""Signature schemes, verified over the raw request bytes.

`verify(source, headers, body, now)` returns None or raises a SignatureError whose
`code` the HTTP layer reports. It never raises anything else, whatever the bytes:
header values are parsed with strict ASCII patterns, and digests are compared
as bytes with `hmac.compare_digest`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Callable, Mapping

from webhooks.sources import Source

_DIGITS = re.compile(r"^[0-9]{1,12}$")


class SignatureError(Exception):
    code = "invalid_signature"


class MissingSignature(SignatureError):
    code = "missing_signature"


class InvalidSignature(SignatureError):
    code = "invalid_signature"


class StaleTimestamp(SignatureError):
    code = "timestamp_out_of_tolerance"


def _hmac(key: bytes, message: bytes, algorithm=hashlib.sha256) -> bytes:
    return hmac.new(key, message, algorithm).digest()


def _matches(expected: list[bytes], candidates: list[bytes]) -> bool:
    # Every pair is compared, so timing does not tell which secret or entry matched.
    found = False
    for digest in expected:
        for candidate in candidates:
            found |= hmac.compare_digest(digest, candidate)
    return found


def _timestamp(raw: str | None) -> int:
    if raw is None or not _DIGITS.match(raw):
        raise InvalidSignature("malformed timestamp")
    return int(raw)


def _check_tolerance(timestamp: int, now: float, tolerance: int) -> None:
    # Unlike Stripe's own libraries, future timestamps are rejected too.
    if abs(now - timestamp) > tolerance:
        raise StaleTimestamp("timestamp outside the tolerance")


def _unhex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value) if re.fullmatch(r"[0-9a-fA-F]+", value) else None
    except ValueError:
        return None


def _unbase64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def verify_stripe(source: Source, headers: Mapping[str, str], body: bytes, now: float) -> None:
    header = headers.get("Stripe-Signature")
    if not header:
        raise MissingSignature("Stripe-Signature header missing")
    timestamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            digest = _unhex(value)
            if digest is not None:
                signatures.append(digest)
    when = _timestamp(timestamp)
    if not signatures:
        raise InvalidSignature("no v1 signature")
    signed = timestamp.encode("ascii") + b"." + body
    # Stripe uses the whole "whsec_..." string as the key's UTF-8 bytes.
    if not _matches([_hmac(secret, signed) for secret in source.secrets], signatures):
        raise InvalidSignature("no signature matched")
    _check_tolerance(when, now, source.tolerance)


def _standard_key(secret: bytes) -> bytes | None:
    text = secret.decode("utf-8", "replace")
    return _unbase64(text[len("whsec_"):] if text.startswith("whsec_") else text)


def verify_standard(source: Source, headers: Mapping[str, str], body: bytes, now: float) -> None:
    msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    header = headers.get("webhook-signature")
    if not (msg_id and timestamp and header):
        raise MissingSignature("webhook-id, webhook-timestamp and webhook-signature required")
    when = _timestamp(timestamp)
    signatures = []
    for entry in header.split():
        version, _, value = entry.partition(",")
        digest = _unbase64(value) if version == "v1" else None
        if digest is not None:
            signatures.append(digest)
    if not signatures:
        raise InvalidSignature("no v1 signature")
    try:
        signed = f"{msg_id}.{timestamp}.".encode("utf-8") + body
    except UnicodeEncodeError:
        raise InvalidSignature("malformed webhook-id") from None
    keys = [key for key in map(_standard_key, source.secrets) if key]
    if not _matches([_hmac(key, signed) for key in keys], signatures):
        raise InvalidSignature("no signature matched")
    _check_tolerance(when, now, source.tolerance)


def verify_paystack(source: Source, headers: Mapping[str, str], body: bytes, now: float) -> None:
    header = headers.get("x-paystack-signature")
    if not header:
        raise MissingSignature("x-paystack-signature header missing")
    digest = _unhex(header.strip())
    expected = [_hmac(secret, body, hashlib.sha512) for secret in source.secrets]
    if digest is None or not _matches(expected, [digest]):
        raise InvalidSignature("signature did not match")


def verify_meta(source: Source, headers: Mapping[str, str], body: bytes, now: float) -> None:
    header = headers.get("X-Hub-Signature-256")
    if not header:
        raise MissingSignature("X-Hub-Signature-256 header missing")
    prefix, _, value = header.strip().partition("=")
    digest = _unhex(value) if prefix == "sha256" else None
    expected = [_hmac(secret, body) for secret in source.secrets]
    if digest is None or not _matches(expected, [digest]):
        raise InvalidSignature("signature did not match")


def verify_generic_hmac(source: Source, headers: Mapping[str, str], body: bytes,
                        now: float) -> None:
    """HMAC-SHA256 of the body, or of "{timestamp}.{body}" when a timestamp header is set."""
    header = headers.get(source.signature_header)
    if not header:
        raise MissingSignature(f"{source.signature_header} header missing")
    value = header.strip()
    if source.signature_prefix:
        if not value.startswith(source.signature_prefix):
            raise InvalidSignature("signature prefix missing")
        value = value[len(source.signature_prefix):]
    digest = _unhex(value) if source.signature_encoding == "hex" else _unbase64(value)
    signed, when = body, None
    if source.timestamp_header:
        raw = headers.get(source.timestamp_header)
        if not raw:
            raise MissingSignature(f"{source.timestamp_header} header missing")
        when = _timestamp(raw)
        signed = raw.encode("ascii") + b"." + body
    expected = [_hmac(secret, signed) for secret in source.secrets]
    if digest is None or not _matches(expected, [digest]):
        raise InvalidSignature("signature did not match")
    if when is not None:
        _check_tolerance(when, now, source.tolerance)


VERIFIERS: dict[str, Callable[[Source, Mapping[str, str], bytes, float], None]] = {
    "stripe": verify_stripe,
    "standard": verify_standard,
    "paystack": verify_paystack,
    "meta": verify_meta,
    "hmac-sha256": verify_generic_hmac,
}


def verify(source: Source, headers: Mapping[str, str], body: bytes, now: float) -> None:
    if not source.secrets:
        raise InvalidSignature("no secret is configured for this source")
    VERIFIERS[source.scheme](source, headers, body, now)

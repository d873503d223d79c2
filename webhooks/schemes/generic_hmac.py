"""hmac-sha256: a configurable HMAC-SHA256 of the body, or of "{timestamp}.{body}".

Source keys: signature_header (X-Signature), signature_encoding (hex | base64),
signature_prefix (e.g. "sha256="), timestamp_header, event_key_header. Without an
event_key_header the body is the identity; with one, a delivery must carry it.

`preset` fixes those keys for a well-known sender (webhooks/schemes/github.py), so
its source needs nothing but `scheme` and its secret.
"""
from __future__ import annotations

import base64
from typing import Any, Mapping

from store.signatures import (
    TEST_EVENT_TYPE,
    InvalidSignature,
    MissingSignature,
    Scheme,
    any_matches,
    check_tolerance,
    hmac_digest,
    json_bytes,
    key_by_body_hash,
    key_from_header,
    parse_timestamp,
    test_id,
    type_from_header,
    type_from_json_field,
    unbase64,
    unhex,
)

OPTIONS = {"signature_header": "X-Signature", "signature_encoding": "hex",
           "signature_prefix": "", "timestamp_header": None, "event_key_header": None}


def parse_options(table: dict) -> dict:
    options = {key: table.pop(key, default) for key, default in OPTIONS.items()}
    for key, value in options.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
    if options["signature_encoding"] not in {"hex", "base64"}:
        raise ValueError("signature_encoding must be hex or base64")
    return options


def _option(source, key: str) -> Any:
    return source.options.get(key, OPTIONS[key])


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    signature_header, prefix = _option(source, "signature_header"), \
        _option(source, "signature_prefix")
    header = headers.get(signature_header)
    if not header:
        raise MissingSignature(f"{signature_header} header missing")
    value = header.strip()
    if prefix:
        if not value.startswith(prefix):
            raise InvalidSignature("signature prefix missing")
        value = value[len(prefix):]
    digest = unhex(value) if _option(source, "signature_encoding") == "hex" \
        else unbase64(value)
    signed, when = body, None
    timestamp_header = _option(source, "timestamp_header")
    if timestamp_header:
        raw = headers.get(timestamp_header)
        if not raw:
            raise MissingSignature(f"{timestamp_header} header missing")
        when = parse_timestamp(raw)
        signed = raw.encode("ascii") + b"." + body
    expected = [hmac_digest(secret, signed) for secret in source.secrets]
    if digest is None or not any_matches(expected, [digest]):
        raise InvalidSignature("signature did not match")
    if when is not None:
        check_tolerance(when, now, source.tolerance)


def event_key(source, headers: Mapping[str, str], body: bytes, payload: Any) -> str:
    header = _option(source, "event_key_header")
    if header is None:
        return key_by_body_hash(source, headers, body, payload)
    return key_from_header(header)(source, headers, body, payload)


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    body = json_bytes({"type": TEST_EVENT_TYPE, "id": test_id("")})
    headers, signed = {"Content-Type": "application/json"}, body
    timestamp_header = _option(source, "timestamp_header")
    if timestamp_header:
        headers[timestamp_header] = str(int(now))
        signed = f"{int(now)}.".encode() + body
    digest = hmac_digest(source.secrets[0], signed)
    encoded = digest.hex() if _option(source, "signature_encoding") == "hex" \
        else base64.b64encode(digest).decode()
    headers[_option(source, "signature_header")] = _option(source, "signature_prefix") + encoded
    if _option(source, "event_key_header"):
        headers[_option(source, "event_key_header")] = test_id("")
    return body, headers


def preset(name: str, *, type_header: str, **options: str) -> Scheme:
    """This scheme with its keys fixed (those not given keep their defaults), the event
    type read from `type_header`, and the `generic` kind unless a source says otherwise."""
    fixed = {**OPTIONS, **parse_options(dict(options))}

    def no_options(table: dict) -> dict:
        return dict(fixed)  # a key the preset fixes is an unknown key to the source

    return Scheme(name, verify, event_key=event_key, event_type=type_from_header(type_header),
                  kind="generic", parse_options=no_options,
                  test_delivery=lambda source, url, now: _typed(
                      test_delivery(source, url, now), type_header))


def _typed(delivery: tuple[bytes, dict[str, str]], type_header: str):
    body, headers = delivery
    return body, {**headers, type_header: TEST_EVENT_TYPE}


SCHEME = Scheme("hmac-sha256", verify, event_key=event_key,
                event_type=type_from_json_field("type"), parse_options=parse_options,
                test_delivery=test_delivery)

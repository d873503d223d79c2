"""Twilio: `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the auth token, of
the full URL Twilio requested followed by every POST parameter, sorted by name, each
name then its value. A body that is not a form (JSON) is covered instead by its
SHA-256 in the URL's `bodySHA256` query parameter, and only the URL is signed.

The URL must be the one Twilio used, scheme and host included, so a source must
give it as `public_url` (the URL configured in Twilio, without its query string):
taken from the request instead, it would come from the Host header, which the sender
chooses. As Twilio's own validator does, the URL is tried both with and without its
default port.

The scheme signs names and values run together with nothing between them, so a
captured form can be cut differently and still verify (`MessageSid=SMx&
MessageStatus=delivered` sent as `MessageSid=SMxMessageStatusdelivered`). A message
SID has one documented shape, SM or MM and 32 hex digits, and anything else is
refused, which leaves such a recut nothing to become.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any, Mapping
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from store.payloads import identifier
from webhooks.schemes.base import (
    InvalidPayload,
    InvalidSignature,
    MissingSignature,
    Scheme,
    any_matches,
    body_hash,
    checked_key,
    hmac_digest,
    json_object,
    unbase64,
)

MAX_FIELDS = 1000
DEFAULT_PORTS = {"https": 443, "http": 80}
MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")


def parse_options(table: dict) -> dict:
    public_url = table.pop("public_url", None)
    if not isinstance(public_url, str) or urlsplit(public_url).scheme not in ("https", "http"):
        raise ValueError("public_url must be set to the http(s) URL configured in Twilio "
                         "(the URL Twilio signs)")
    return {"public_url": public_url}


def signed_url(source, url: str) -> str:
    """The source's public_url, with the query string of the request's URL."""
    query = urlsplit(url).query
    return source.options["public_url"] + (f"?{query}" if query else "")


def _form_pairs(body: bytes) -> list[tuple[str, str]] | None:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                         max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None


def _port_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = DEFAULT_PORTS.get(parts.scheme)
    bare = urlunsplit(parts._replace(netloc=host))
    ported = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    return [bare, ported] if default else [url]


def verify(source, headers: Mapping[str, str], body: bytes, now: float, url: str = "") -> None:
    header = headers.get("X-Twilio-Signature")
    if not header:
        raise MissingSignature("X-Twilio-Signature header missing")
    target = signed_url(source, url)
    body_sha256 = parse_qs(urlsplit(target).query).get("bodySHA256")
    if body_sha256:
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(),
                                   body_sha256[0].encode("utf-8", "replace")):
            raise InvalidSignature("the body does not match its bodySHA256")
        params = ""
    else:
        pairs = _form_pairs(body)
        if pairs is None:
            raise InvalidSignature("the body is not a form Twilio signed")
        names = sorted({name for name, _ in pairs})
        params = "".join(name + value for name in names
                         for value in sorted({v for n, v in pairs if n == name}))
    digest = unbase64(header.strip())
    expected = [hmac_digest(secret, (variant + params).encode("utf-8"), hashlib.sha1)
                for secret in source.secrets for variant in _port_variants(target)]
    if digest is None or not any_matches(expected, [digest]):
        raise InvalidSignature("signature did not match")


def parse_payload(body: bytes) -> dict:
    """A form's fields (the last value of a repeated one), or a JSON object."""
    if body.lstrip()[:1] == b"{":
        return json_object(body)
    pairs = _form_pairs(body)
    if pairs is None:
        raise InvalidPayload("the body is not a form or a JSON object")
    return dict(pairs)


def event_key(source, headers: Mapping[str, str], body: bytes, payload: Any) -> str:
    """MessageSid (or SmsSid), with the status for a status callback (one message
    sends several, each resent unchanged when unanswered); else the body hash: a
    callback without a sid is identified by its bytes."""
    sid = payload.get("MessageSid") or payload.get("SmsSid")
    if sid is None:
        return body_hash(body)
    if not isinstance(sid, str) or not MESSAGE_SID.fullmatch(sid):
        raise InvalidPayload("MessageSid is not a Twilio message SID")
    key = checked_key(sid, "a MessageSid")
    status = identifier(payload.get("MessageStatus"), 20)
    return checked_key(f"{key}:{status}", "a MessageSid") if status else key


def event_type(payload: Any) -> str | None:
    return "status" if identifier(payload.get("MessageStatus"), 20) else "message"


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    # A status callback for a message nobody sent: one outbound row, no documents.
    params = {"MessageSid": "SM" + secrets.token_hex(16), "MessageStatus": "sent",
              "SmsStatus": "sent"}
    signed = signed_url(source, url) + "".join(name + params[name] for name in sorted(params))
    digest = hmac_digest(source.secrets[0], signed.encode(), hashlib.sha1)
    return urlencode(params).encode(), {
        "X-Twilio-Signature": base64.b64encode(digest).decode(),
        "Content-Type": "application/x-www-form-urlencoded"}


SCHEME = Scheme("twilio", verify, event_key=event_key, event_type=event_type,
                parse_payload=parse_payload, kind="whatsapp", parse_options=parse_options,
                test_delivery=test_delivery)

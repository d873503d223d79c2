"""WhatsApp through Twilio: an inbound message is a form post (MessageSid, From, To,
Body, NumMedia, MediaUrl{n}, MediaContentType{n}); a status callback carries
MessageStatus. A media item is its MediaUrl, fetched with HTTP basic auth (the
account SID and the auth token); Twilio answers with a redirect to its CDN.

The signature: `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the auth
token, of the full URL Twilio requested followed by every POST parameter, sorted by name, each
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

from store.payloads import PayloadError, free_text, identifier
from store.signatures import (
    InvalidPayload,
    InvalidSignature,
    MissingSignature,
    Scheme,
    any_matches,
    body_hash,
    checked_key,
    hmac_digest,
    json_object,
    public_url_option,
    unbase64,
)
from whatsapp.base import (
    Fetcher,
    Inbound,
    Located,
    MediaItem,
    Notification,
    StatusUpdate,
    WhatsAppProvider,
)
from whatsapp.settings import MediaCredentials

MAX_FIELDS = 1000
DEFAULT_PORTS = {"https": 443, "http": 80}
MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")


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


def event_type(headers: Mapping[str, str], payload: Any) -> str | None:
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
                parse_payload=parse_payload, kind="whatsapp",
                parse_options=public_url_option("Twilio"),
                test_delivery=test_delivery)


MAX_MEDIA = 10  # Twilio sends at most ten media items with a message


def parse(body: bytes) -> Any:
    """The form (or JSON object) Twilio posted, as ingest read it."""
    try:
        return parse_payload(body)
    except ValueError:
        raise PayloadError("the body is not a Twilio form or JSON object") from None


def read(payload: Any) -> Notification:
    if not isinstance(payload, dict):
        raise PayloadError("not a Twilio message webhook")
    sid = identifier(payload.get("MessageSid"), 64) or identifier(payload.get("SmsSid"), 64)
    if sid is None:
        return Notification()
    status = identifier(payload.get("MessageStatus"), 20)
    if status is not None:  # a status callback for a message we sent
        return Notification(statuses=(StatusUpdate(
            wamid=sid, status=status, at=None, phone=_phone(payload.get("To")),
            errors=_errors(payload)),))
    items = []
    for n in range(_count(payload.get("NumMedia"))):
        url = identifier(payload.get(f"MediaUrl{n}"), 1000)
        mime = identifier(payload.get(f"MediaContentType{n}"), 100)
        if url:
            items.append(MediaItem(ref=url, kind=_kind(mime), mime_type=mime, filename=None))
    return Notification(messages=(Inbound(
        wamid=sid, phone=_phone(payload.get("From")),
        message_type="media" if items else "text", text=free_text(payload.get("Body"), 65536),
        sent_at=None, media=tuple(items)),))


def _phone(value: Any) -> str | None:
    value = identifier(value, 64)
    return identifier(value.removeprefix("whatsapp:"), 32) if value else None


def _count(value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 2:
        return min(int(value), MAX_MEDIA)
    return 0


def _kind(mime: str | None) -> str:
    major = (mime or "").split("/", 1)[0]
    return major if major in ("image", "audio", "video") else "document"


def _errors(payload: dict) -> list | None:
    code = identifier(payload.get("ErrorCode"), 20)
    if code is None:
        return None
    return [{"code": code, "title": free_text(payload.get("ErrorMessage"), 500)}]


def locate(fetcher: Fetcher, media_url: str) -> Located:
    credentials = fetcher.settings.credentials
    return Located(url=media_url, auth=(credentials.account_sid, credentials.token))


def media_credentials(given: Mapping[str, Any], secrets: tuple[bytes, ...],
                      environ: Mapping[str, str]) -> MediaCredentials:
    """Basic auth: the account SID from the variable `account_sid_env` names, and the
    auth token, which is the source's secret. Media URLs are Twilio's API's own."""
    account_sid = environ.get(given.get("account_sid_env") or "")
    if not account_sid or not secrets:
        raise ValueError("Twilio media fetching needs account_sid_env set to a variable "
                         "holding the account SID, and the auth token in secrets_env")
    return MediaCredentials(token=secrets[0].decode(), account_sid=account_sid,
                            api_base="https://api.twilio.com")


PROVIDER = WhatsAppProvider(
    "twilio", parse, read, locate, scheme=SCHEME, media_hosts=("twilio.com", "twiliocdn.com"),
    gone_on=frozenset({404}), media_keys=("account_sid_env",),
    media_credentials=media_credentials)

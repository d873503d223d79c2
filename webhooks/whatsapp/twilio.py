"""WhatsApp through Twilio: an inbound message is a form post (MessageSid, From, To,
Body, NumMedia, MediaUrl{n}, MediaContentType{n}); a status callback carries
MessageStatus. A media item is its MediaUrl, fetched with HTTP basic auth (the
account SID and the auth token); Twilio answers with a redirect to its CDN.
"""
from __future__ import annotations

from typing import Any

from store.payloads import PayloadError, free_text, identifier
from webhooks.whatsapp.base import (
    Fetcher,
    Inbound,
    Located,
    MediaItem,
    Notification,
    StatusUpdate,
    WhatsAppProvider,
)

MAX_MEDIA = 10  # Twilio sends at most ten media items with a message


def parse(body: bytes) -> Any:
    """The form (or JSON object) Twilio posted, as the twilio scheme read it at ingest."""
    from webhooks.schemes.twilio import parse_payload  # the one reader of Twilio's wire format

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
    settings = fetcher.settings
    return Located(url=media_url, auth=(settings.account_sid, settings.token))


PROVIDER = WhatsAppProvider(
    "twilio", parse, read, locate, media_hosts=("twilio.com", "twiliocdn.com"),
    gone_on=frozenset({404}))

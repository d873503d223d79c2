"""WhatsApp Cloud API (Meta): notifications batch messages and statuses under
entry[].changes[].value; a media item is a media id, resolved with the Graph API.

`GET {graph_api_base}/{media_id}` with the source's access token answers `url`,
`mime_type`, `sha256` and `file_size`; the URL needs the same token and expires
after some minutes, so a 401, 403 or 404 on the download asks for a fresh one once.
A media id Meta no longer has (404, after about 7 days) is expired.

Deliveries carry `X-Hub-Signature-256: sha256=<hex>` of the body; Meta sends no
timestamp, so deduplication is the only replay defence. Subscribing a URL is a GET
with `hub.mode=subscribe`, the source's verify token and a challenge to echo.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Any, Iterator, Mapping

from store.payloads import PayloadError, free_text, identifier, int64, parse_instant, storable_json
from store.signatures import (
    Scheme,
    check_hmac,
    hmac_digest,
    json_bytes,
    key_by_body_hash,
    test_id,
    type_from_json_field,
)
from whatsapp.base import (
    Fetcher,
    Inbound,
    Located,
    MediaExpired,
    MediaFailed,
    MediaItem,
    Notification,
    StatusUpdate,
    WhatsAppProvider,
)
from whatsapp.settings import MediaCredentials, api_base

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def verify(source, headers: Mapping[str, str], body: bytes, now: float,
           url: str = "") -> None:
    check_hmac(source, headers, "X-Hub-Signature-256", body, prefix="sha256=")


def test_delivery(source, url: str, now: float) -> tuple[bytes, dict[str, str]]:
    # A notification with no messages and no statuses: stored, processed, no effect.
    body = json_bytes({"object": "whatsapp_business_account", "entry": [
        {"id": test_id(""), "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp", "messages": [], "statuses": []}}]}]})
    digest = hmac_digest(source.secrets[0], body).hex()
    return body, {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


MAX_CHALLENGE = 256


def handshake(source, args: Mapping[str, str]) -> str | None:
    """The challenge to echo when the subscription request carries the source's verify
    token (compared in constant time); None refuses it."""
    token, challenge = args.get("hub.verify_token", ""), args.get("hub.challenge", "")
    if (not source.verify_token or args.get("hub.mode") != "subscribe" or not challenge
            or len(challenge) > MAX_CHALLENGE
            or not hmac.compare_digest(token.encode(), source.verify_token.encode())):
        return None
    return challenge


# A notification batches messages and statuses and has no id of its own; Meta
# resends the identical body, so the body is the identity (each wamid is then
# stored once by the handler).
SCHEME = Scheme("meta", verify, event_key=key_by_body_hash,
                event_type=type_from_json_field("object"), kind="whatsapp",
                test_delivery=test_delivery, handshake=handshake)


def parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("the body is not JSON") from None


def read(payload: Any) -> Notification:
    messages, statuses = [], []
    for value in _values(payload):
        messages.extend(m for m in map(_inbound, _objects(value.get("messages"))) if m)
        statuses.extend(s for s in map(_status, _objects(value.get("statuses"))) if s)
    return Notification(tuple(messages), tuple(statuses))


def _values(payload: Any) -> Iterator[dict]:
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise PayloadError("not a WhatsApp Cloud API notification")
    for entry in _objects(payload["entry"]):
        for change in _objects(entry.get("changes")):
            value = change.get("value")
            if isinstance(value, dict):
                yield value


def _objects(value: Any) -> Iterator[dict]:
    """The JSON objects of a list; anything else in the list, or a non-list, is skipped."""
    return (item for item in value if isinstance(item, dict)) if isinstance(value, list) \
        else iter(())


def _inbound(message: dict) -> Inbound | None:
    # Ids must be stored exactly as sent (or the message is skipped); the
    # customer's words are kept, made storable.
    wamid = identifier(message.get("id"))
    if wamid is None:
        return None
    kind = identifier(message.get("type"), 30)
    media = message.get(kind) if kind in MEDIA_TYPES else None
    media = media if isinstance(media, dict) else {}
    text = message.get("text") if isinstance(message.get("text"), dict) else {}
    media_id = identifier(media.get("id"))
    items = (MediaItem(ref=media_id, kind=kind, mime_type=identifier(media.get("mime_type"), 100),
                       filename=free_text(media.get("filename"), 255)),) if media_id else ()
    return Inbound(wamid=wamid, phone=identifier(message.get("from"), 32), message_type=kind,
                   text=free_text(text.get("body"), 65536),
                   sent_at=parse_instant(_int(message.get("timestamp"))), media=items)


def _status(status: dict) -> StatusUpdate | None:
    wamid, new = identifier(status.get("id")), identifier(status.get("status"), 20)
    if wamid is None or new is None:
        return None
    errors = storable_json(status["errors"]) if isinstance(status.get("errors"), list) else None
    return StatusUpdate(wamid=wamid, status=new, at=parse_instant(_int(status.get("timestamp"))),
                        phone=identifier(status.get("recipient_id"), 32), errors=errors)


def _int(value: Any) -> int | None:
    """Meta sends timestamps as digit strings; anything longer than a timestamp is not one."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    return int64(value)


def locate(fetcher: Fetcher, media_id: str) -> Located:
    from store import fetch  # requests: only where media are fetched (the worker)

    credentials = fetcher.settings.credentials
    bearer = {"Authorization": f"Bearer {credentials.token}"}
    url = f"{credentials.api_base}/{media_id}"
    answer = fetch.get(fetcher.session, fetcher.api_policy, url, headers=bearer)
    try:
        if answer.status in (400, 404, 410):  # Meta answers 400 or 404 for an unknown id
            raise MediaExpired(media_id)
        if answer.status in (401, 403):
            raise MediaFailed("provider_refused", f"the Graph API refused the token "
                                                  f"({answer.status})")
        if answer.status != 200:
            raise fetch.FetchFailed(f"the Graph API answered {answer.status}", answer.status,
                                    fetch.retry_after(answer.headers))
        body = answer.json()
    finally:
        answer.close()
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise MediaFailed("provider_error", "the Graph API's answer has no media URL")
    return Located(url=body["url"], headers=bearer, size=_size(body.get("file_size")),
                   sha256=_sha256(body.get("sha256")),
                   mime_type=identifier(body.get("mime_type"), 100))


def _size(value: Any) -> int | None:
    size = _int(value)
    return size if size is not None and size >= 0 else None


def _sha256(value: Any) -> str | None:
    """Meta reports a hex digest; a base64 one is read too."""
    if not isinstance(value, str):
        return None
    if _HEX64.match(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


GRAPH_API_BASE = "https://graph.facebook.com/v21.0"


def media_credentials(given: Mapping[str, Any], secrets: tuple[bytes, ...],
                      environ: Mapping[str, str]) -> MediaCredentials:
    """`access_token_env` names the variable holding the Graph API token;
    `graph_api_base` moves the API (a test's fake)."""
    token = environ.get(given.get("access_token_env") or "")
    if not token:
        raise ValueError("media fetching needs access_token_env set to a variable "
                         "holding the Graph API access token")
    base = api_base(given.get("graph_api_base", GRAPH_API_BASE),
                    given.get("media_allow_http", False) is True, "graph_api_base")
    return MediaCredentials(token=token, api_base=base)


PROVIDER = WhatsAppProvider(
    "meta", parse, read, locate, scheme=SCHEME,
    media_keys=("access_token_env", "graph_api_base"), media_credentials=media_credentials,
    # Meta's media CDN (lookaside.fbsbx.com) and its app CDN hosts
    media_hosts=("fbsbx.com", "fbcdn.net", "whatsapp.net"),
    refresh_on=frozenset({401, 403, 404}))

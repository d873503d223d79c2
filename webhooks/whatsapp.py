"""WhatsApp Cloud API: inbound messages stored once per wamid, statuses forward only."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import BigIntId, Base, JSONType, UTCDateTime, insert_unless_exists, utcnow
from store.payloads import (PayloadError, free_text, identifier, int64, parse_instant,
                            storable_json)

INBOUND, OUTBOUND = "inbound", "outbound"
# Delivery only moves up this ladder; a failure is final and keeps its error.
STATUS_RANK = {"received": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")


class WhatsAppMessage(Base):
    __tablename__ = "whatsapp_messages"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    wamid: Mapped[str] = mapped_column(String(255), unique=True)
    direction: Mapped[str] = mapped_column(String(10))
    phone: Mapped[str | None] = mapped_column(String(32))  # personal data: never logged
    message_type: Mapped[str | None] = mapped_column(String(30))
    text: Mapped[str | None] = mapped_column(Text())
    media_id: Mapped[str | None] = mapped_column(String(255))
    media_mime_type: Mapped[str | None] = mapped_column(String(100))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    status_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    errors: Mapped[list | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


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


def apply_notification(session: Session, payload: Any) -> dict[str, int]:
    counts = {"messages": 0, "statuses": 0}
    for value in _values(payload):
        for message in _objects(value.get("messages")):
            if _store_inbound(session, message):
                counts["messages"] += 1
        for status in _objects(value.get("statuses")):
            if _apply_status(session, status):
                counts["statuses"] += 1
    return counts


def _store_inbound(session: Session, message: dict) -> bool:
    # Ids must be stored exactly as sent (or the message is skipped); the
    # customer's words are kept, made storable.
    wamid = identifier(message.get("id"))
    if wamid is None:
        return False
    kind = identifier(message.get("type"), 30)
    media = message.get(kind) if kind in MEDIA_TYPES else None
    media = media if isinstance(media, dict) else {}
    text = message.get("text") if isinstance(message.get("text"), dict) else {}
    values = dict(
        wamid=wamid, direction=INBOUND, phone=identifier(message.get("from"), 32),
        message_type=kind, text=free_text(text.get("body"), 65536),
        media_id=identifier(media.get("id")),
        media_mime_type=identifier(media.get("mime_type"), 100),
        sent_at=parse_instant(_int(message.get("timestamp"))), status="received",
        created_at=utcnow())
    # None when Meta delivered it before: each wamid is stored once.
    return insert_unless_exists(session, WhatsAppMessage, values, ["wamid"]) is not None


def _int(value: Any) -> int | None:
    """Meta sends timestamps as digit strings; anything longer than a timestamp is not one."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    return int64(value)


def _apply_status(session: Session, status: dict) -> bool:
    wamid, new = identifier(status.get("id")), identifier(status.get("status"), 20)
    if wamid is None or new not in STATUS_RANK:
        return False
    at = parse_instant(_int(status.get("timestamp")))
    errors = storable_json(status["errors"]) if isinstance(status.get("errors"), list) else None
    created = insert_unless_exists(session, WhatsAppMessage, dict(
        wamid=wamid, direction=OUTBOUND, phone=identifier(status.get("recipient_id"), 32),
        status=new, status_at=at, errors=errors, created_at=utcnow()), ["wamid"])
    if created is not None:  # the first we hear of this outbound message
        return True
    row = session.scalar(select(WhatsAppMessage).where(WhatsAppMessage.wamid == wamid)
                         .with_for_update())
    if STATUS_RANK[new] <= STATUS_RANK.get(row.status, 0) or row.status == "failed":
        return False
    row.status, row.status_at = new, at
    if errors:
        row.errors = errors
    return True

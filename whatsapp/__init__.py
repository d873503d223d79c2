"""WhatsApp, from Meta's Cloud API or from Twilio: inbound messages stored once per
message id (wamid, or Twilio's MessageSid), statuses of outbound ones only ever moving
forward, and media items handed to the document pipeline (whatsapp/media.py).

Adding a provider is a module here declaring `PROVIDER = WhatsAppProvider(...)`
(whatsapp/base.py) and one line in PROVIDERS.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from documents import deletion, origins
from store import events
from store.db import insert_unless_exists, utcnow
from store.outbox import enqueue
from store.payloads import PayloadError
from store.sealing import blind_index
from store.task_names import FETCH_MEDIA
from whatsapp import meta, twilio
from whatsapp.base import Inbound, StatusUpdate, WhatsAppProvider
from whatsapp.models import (
    INBOUND,
    MEDIA_PENDING,
    OUTBOUND,
    WhatsAppMedia,
    WhatsAppMessage,
)

__all__ = ["PROVIDERS", "STATUS_RANK", "WhatsAppMedia", "WhatsAppMessage", "apply_notification",
           "document_origins"]

PROVIDERS: dict[str, WhatsAppProvider] = {provider.name: provider for provider in (
    meta.PROVIDER,
    twilio.PROVIDER,
)}
# One ladder for every provider's statuses (Meta's are a subset of Twilio's); delivery
# only moves up it, and a failure is final and keeps its error.
STATUS_RANK = {"received": 0, "queued": 1, "sent": 2, "delivered": 3, "read": 4,
               "undelivered": 5, "failed": 5}
FINAL = {"failed", "undelivered"}


def apply_notification(session: Session, payload: Any, provider: str, source: str | None = None,
                       fetch_media: bool = False) -> dict[str, int]:
    """Store what a verified notification says (its payload, or the stored body as
    bytes); with `fetch_media`, every media item of a new inbound message is queued
    for the document pipeline in the same transaction."""
    reader = PROVIDERS.get(provider)
    if reader is None:  # a source whose provider has since been removed
        raise PayloadError(f"no WhatsApp reader for provider {provider!r}")
    if isinstance(payload, bytes):
        payload = reader.parse(payload)
    notification = reader.read(payload)
    counts = {"messages": 0, "statuses": 0, "media": 0}
    for message in notification.messages:
        stored = _store_inbound(session, message, source)
        if stored is not None:
            counts["messages"] += 1
            media = _queue_media(session, stored.id, message, source, provider) \
                if fetch_media else []
            counts["media"] += len(media)
            events.record(session, events.MESSAGE_RECEIVED, {
                **message_json(stored), "provider": provider,
                "media": [media_json(item) for item in media]},
                subject_index=stored.phone_index)
    for status in notification.statuses:
        counts["statuses"] += _apply_status(session, status, source)
    return counts


def _store_inbound(session: Session, message: Inbound,
                   source: str | None) -> WhatsAppMessage | None:
    first = message.media[0] if message.media else None
    values = dict(
        wamid=message.wamid, source=source, direction=INBOUND, phone=message.phone,
        phone_index=blind_index("phone", message.phone), message_type=message.message_type,
        text=message.text,
        media_id=first.ref[:255] if first and len(first.ref) <= 255 else None,
        media_mime_type=first.mime_type if first else None, sent_at=message.sent_at,
        status="received", created_at=utcnow())
    # None when the provider delivered it before: each message id is stored once. The
    # key, not the mapped row, comes back (the cached Core statement; see apply_update),
    # and the row for the event is built from what was written.
    new_id = insert_unless_exists(session, WhatsAppMessage, values, ["wamid"])
    return WhatsAppMessage(id=new_id, **values) if new_id is not None else None


def _queue_media(session: Session, message_id: int, message: Inbound, source: str,
                 provider: str) -> list[WhatsAppMedia]:
    queued = []
    for position, item in enumerate(message.media):
        media = WhatsAppMedia(
            message_id=message_id, position=position, source=source, provider=provider,
            wamid=message.wamid, kind=item.kind, media_ref=item.ref, mime_type=item.mime_type,
            filename=item.filename, status=MEDIA_PENDING, attempts=0, created_at=utcnow())
        session.add(media)
        session.flush()
        enqueue(session, FETCH_MEDIA, {"media_id": media.id})
        queued.append(media)
    return queued


def _apply_status(session: Session, status: StatusUpdate, source: str | None) -> bool:
    if status.status not in STATUS_RANK:
        return False
    values = dict(wamid=status.wamid, source=source, direction=OUTBOUND, phone=status.phone,
                  phone_index=blind_index("phone", status.phone), status=status.status,
                  status_at=status.at, errors=status.errors, created_at=utcnow())
    if insert_unless_exists(session, WhatsAppMessage, values, ["wamid"]) is not None:
        _status_changed(session, WhatsAppMessage(**values), None)  # the first we hear of it
        return True
    row = session.scalar(select(WhatsAppMessage).where(WhatsAppMessage.wamid == status.wamid)
                         .with_for_update())
    if STATUS_RANK[status.status] <= STATUS_RANK.get(row.status, 0) or row.status in FINAL:
        return False
    previous = row.status
    row.status, row.status_at = status.status, status.at
    if status.errors:
        row.errors = status.errors
    _status_changed(session, row, previous)
    return True


def _status_changed(session: Session, row: WhatsAppMessage, previous: str | None) -> None:
    """Statuses only move forward (sent, delivered, read; failed is final): each move
    is one `whatsapp.message.status` event."""
    events.record(session, events.MESSAGE_STATUS, {
        "source": row.source, "wamid": row.wamid, "status": row.status,
        "previous_status": previous,
        "status_at": row.status_at.isoformat() if row.status_at else None,
        "errors": row.errors}, subject_index=row.phone_index)


def message_json(row: WhatsAppMessage) -> dict:
    """A message as the API and the event log show it (`from`: personal data)."""
    return {"source": row.source, "wamid": row.wamid, "direction": row.direction,
            "from": row.phone if row.direction == INBOUND else None,
            "to": row.phone if row.direction != INBOUND else None,
            "type": row.message_type, "text": row.text, "status": row.status,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "status_at": row.status_at.isoformat() if row.status_at else None,
            "created_at": row.created_at.isoformat()}


def media_json(media: WhatsAppMedia) -> dict:
    return {"position": media.position, "kind": media.kind, "mime_type": media.mime_type,
            "status": media.status, "document_id": media.document_id}


def document_origins(session: Session, document_ids: list[int]) -> dict[int, dict]:
    """{document id: {source, wamid}} for those of `document_ids` that came from
    WhatsApp (the first message that brought the bytes, when several did)."""
    if not document_ids:
        return {}
    rows = session.execute(select(WhatsAppMedia.document_id, WhatsAppMedia.source,
                                  WhatsAppMedia.wamid)
                           .where(WhatsAppMedia.document_id.in_(document_ids))
                           .order_by(WhatsAppMedia.id.desc())).all()
    return {document_id: {"source": source, "wamid": wamid}
            for document_id, source, wamid in rows}


origins.register(lambda session, ids: {
    document_id: {"kind": "whatsapp", **origin}
    for document_id, origin in document_origins(session, ids).items()})
deletion.register(lambda session, ids: session.execute(
    update(WhatsAppMedia).where(WhatsAppMedia.document_id.in_(ids)).values(document_id=None)
    .execution_options(synchronize_session=False)))


def documents_from(source: str):
    """The ids of documents a WhatsApp source brought, as a subquery for a filter."""
    return select(WhatsAppMedia.document_id).where(WhatsAppMedia.source == source)

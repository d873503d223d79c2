"""WhatsApp messages (once per wamid, or Twilio's MessageSid) and the media they carry."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.db import Base, BigIntId, JSONType, UTCDateTime, utcnow
from store.sealing import SealedText

INBOUND, OUTBOUND = "inbound", "outbound"
MEDIA_PENDING, MEDIA_FETCHED, MEDIA_FAILED, MEDIA_EXPIRED = (
    "pending", "fetched", "failed", "expired")
MEDIA_STATUSES = (MEDIA_PENDING, MEDIA_FETCHED, MEDIA_FAILED, MEDIA_EXPIRED)


class WhatsAppMessage(Base):
    __tablename__ = "whatsapp_messages"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    wamid: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(10))
    # personal data, sealed at rest (store/sealing.py) and never logged; phone_index is
    # its blind index, to find a person's messages without decrypting any
    phone: Mapped[str | None] = mapped_column(SealedText())
    phone_index: Mapped[str | None] = mapped_column(String(64))
    message_type: Mapped[str | None] = mapped_column(String(30))
    text: Mapped[str | None] = mapped_column(SealedText())
    media_id: Mapped[str | None] = mapped_column(String(255))
    media_mime_type: Mapped[str | None] = mapped_column(String(100))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    status_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    errors: Mapped[list | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    # purge_retention redacts texts and phones past RETENTION_MESSAGE_TEXT_DAYS
    __table_args__ = (Index("ix_whatsapp_messages_created_at", "created_at"),
                      Index("ix_whatsapp_messages_phone_index", "phone_index"))


class WhatsAppMedia(Base):
    """One media item of an inbound message (Meta sends one, Twilio up to ten), on its
    way into the document pipeline; `document_id` once it is there."""
    __tablename__ = "whatsapp_media"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger())
    position: Mapped[int] = mapped_column(Integer())      # Twilio's MediaUrl{n}; 0 for Meta
    source: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(20))     # meta | twilio
    wamid: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))         # image, document, audio, video, sticker
    # Meta's media id, or Twilio's media URL: never a credential
    media_ref: Mapped[str] = mapped_column(String(1000))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    filename: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default=MEDIA_PENDING)
    error_code: Mapped[str | None] = mapped_column(String(50))
    error_message: Mapped[str | None] = mapped_column(String(500))
    document_id: Mapped[int | None] = mapped_column(BigInteger())
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # when its work was last handed to a worker (an import: or last made progress);
    # the redrive job hands it out again past its REDRIVE_*AFTER
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("message_id", "position"),
        Index("ix_whatsapp_media_status_enqueued_at", "status", "enqueued_at"),
        Index("ix_whatsapp_media_status", "status"),
        Index("ix_whatsapp_media_document_id", "document_id"),
    )

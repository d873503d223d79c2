"""The states a WhatsApp media item ends in. Fetching it is whatsapp/fetching.py's,
and only the worker loads it (it needs an HTTP client; the web does not); what operators
do with items (list, retry) is webhooks/operations.py's.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from store.db import utcnow
from whatsapp.models import MEDIA_FAILED, MEDIA_PENDING, WhatsAppMedia


def give_up(session: Session, media_id: int) -> None:
    """Retries spent (the provider or the store stayed away), or the worker kept dying."""
    media = session.get(WhatsAppMedia, media_id)
    if media is not None and media.status == MEDIA_PENDING:
        finish(media, MEDIA_FAILED, "fetch_failed",
               "Fetching failed through every retry; retry it from the admin API or CLI.")


def finish(media: WhatsAppMedia, status: str, code: str | None = None,
           message: str | None = None) -> WhatsAppMedia:
    media.status, media.error_code = status, code
    media.error_message = message[:500] if message else None
    media.finished_at = utcnow()
    return media

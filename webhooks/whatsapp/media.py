"""WhatsApp media items: what operators do with them (list, retry), and the states
they end in. Fetching them is webhooks/whatsapp/fetching.py's, and only the worker
loads it (it needs an HTTP client; the web does not).
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from store import audit
from store.db import newest_first, utcnow
from store.outbox import enqueue
from store.task_names import FETCH_MEDIA
from webhooks.whatsapp.models import MEDIA_FAILED, MEDIA_PENDING, WhatsAppMedia


class MediaNotFound(LookupError):
    pass


def give_up(session: Session, media_id: int) -> None:
    """Retries spent (the provider or the store stayed away), or the worker kept dying."""
    media = session.get(WhatsAppMedia, media_id)
    if media is not None and media.status == MEDIA_PENDING:
        finish(media, MEDIA_FAILED, "fetch_failed",
               "Fetching failed through every retry; retry it from the admin API or CLI.")


def retry(session: Session, media_id: int, actor: str) -> WhatsAppMedia:
    """Fetch again (an operator's decision), queued with an audit entry; the caller commits."""
    media = session.get(WhatsAppMedia, media_id)
    if media is None:
        raise MediaNotFound(media_id)
    previous = media.status
    media.status, media.error_code, media.error_message = MEDIA_PENDING, None, None
    media.document_id, media.finished_at = None, None
    enqueue(session, FETCH_MEDIA, {"media_id": media.id})
    audit.record(session, actor, "whatsapp_media.retry", "whatsapp_media", media.id,
                 {"previous_status": previous, "source": media.source})
    return media


def list_media(session: Session, *, status: str | None = None, source: str | None = None,
               limit: int = 50, before_id: int | None = None) -> list[WhatsAppMedia]:
    return newest_first(session, WhatsAppMedia, limit=limit, before_id=before_id,
                        status=status, source=source)


def finish(media: WhatsAppMedia, status: str, code: str | None = None,
           message: str | None = None) -> WhatsAppMedia:
    media.status, media.error_code = status, code
    media.error_message = message[:500] if message else None
    media.finished_at = utcnow()
    return media

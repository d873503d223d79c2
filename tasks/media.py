"""Fetch WhatsApp media into the document pipeline, on the `documents` queue."""
from __future__ import annotations

import logging
import random

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval

from documents.sniffing import allowlist_from
from store.fetch import FetchFailed
from store.task_names import FETCH_MEDIA
from tasks import register_give_up
from tasks.app_state import config, db_session, redis_client, sources, storage
from whatsapp.fetching import MediaEnvironment, TryLater, fetch_media
from whatsapp.media import give_up

log = logging.getLogger(__name__)

register_give_up(FETCH_MEDIA)(give_up)  # failed: the provider never answered


# The retry path is written out because a provider's 429 or 503 says when to come
# back (Retry-After), which the declarative policy cannot honour; every other
# failure (the database, the blob store, a busy source) takes the same backoff.
# MEDIA_FETCH_MAX_RETRIES (RETRY_LIMITS) caps them all, then the item is failed.
@shared_task(name=FETCH_MEDIA, bind=True, acks_late=True, ignore_result=True)
def fetch(self, media_id: int) -> None:
    session = db_session()
    environment = MediaEnvironment(
        sources(), storage(), redis_client(), allowlist_from(config("DOCUMENT_ALLOWED_TYPES")),
        key_prefix=config("REDIS_KEY_PREFIX"), connect_timeout=config("MEDIA_CONNECT_TIMEOUT"),
        read_timeout=config("MEDIA_READ_TIMEOUT"), slot_wait=config("MEDIA_SLOT_WAIT"))
    try:
        media = fetch_media(session, environment, media_id)
        session.commit()
    except Exception as exc:
        session.rollback()
        countdown = get_exponential_backoff_interval(
            factor=config("MEDIA_FETCH_BACKOFF"), retries=self.request.retries,
            maximum=300, full_jitter=True)
        if isinstance(exc, FetchFailed) and exc.retry_after:
            countdown = max(countdown, exc.retry_after)
        elif isinstance(exc, TryLater):
            countdown = max(countdown, exc.countdown + random.uniform(0, exc.countdown))
        raise self.retry(exc=exc, countdown=countdown)
    if media is not None:
        log.info("whatsapp media fetched", extra={
            "media_id": media_id, "status": media.status, "code": media.error_code,
            "document_id": media.document_id})

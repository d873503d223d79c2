"""Scan uploaded documents on the `documents` queue."""
from __future__ import annotations

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval

from documents.scanner import client_from_url
from documents.scanning import give_up, scan_document
from tasks import config, db_session, storage

log = logging.getLogger(__name__)


@shared_task(name="sluice.documents.scan", bind=True, acks_late=True, ignore_result=True,
             max_retries=None)
def scan(self, document_id: int) -> None:
    """Retry while clamd is down or unsure; then scan_error. Never clean without OK."""
    session = db_session()
    url = config("CLAMD_URL")
    if not url:
        log.warning("no CLAMD_URL: the document stays pending_scan",
                    extra={"document_id": document_id})
        return
    try:
        scan_document(session, storage(), client_from_url(url, timeout=30), document_id,
                      config("DOCUMENT_SCAN_MAX_BYTES"))
        session.commit()
        return
    except Exception as exc:
        session.rollback()
        attempt = self.request.retries
        log.warning("document scan failed", extra={
            "document_id": document_id, "attempt": attempt + 1, "error": type(exc).__name__})
        if attempt >= config("DOCUMENT_SCAN_MAX_RETRIES"):
            give_up(session, document_id)
            session.commit()
            return
        raise self.retry(exc=exc, countdown=get_exponential_backoff_interval(
            factor=2, retries=attempt, maximum=300, full_jitter=True))

"""Scan uploaded documents on the `documents` queue."""
from __future__ import annotations

import logging

from celery import shared_task

from documents.scanner import client_from_url
from documents.scanning import give_up, scan_document
from store.task_names import SCAN_DOCUMENT
from tasks import config, db_session, retry_or_give_up, storage, when_lost_too_often

log = logging.getLogger(__name__)


when_lost_too_often(SCAN_DOCUMENT)(give_up)


@shared_task(name=SCAN_DOCUMENT, bind=True, acks_late=True, ignore_result=True,
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
        retry_or_give_up(self, exc, config("DOCUMENT_SCAN_MAX_RETRIES"),
                         lambda: give_up(session, document_id), "document scan",
                         document_id=document_id)

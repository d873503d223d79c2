"""Scan uploaded documents on the `documents` queue."""
from __future__ import annotations

import logging

from celery import shared_task

from documents.scanner import client_from_url
from documents.scanning import give_up, scan_document
from store.task_names import SCAN_DOCUMENT
from tasks import config, db_session, gives_up, storage

log = logging.getLogger(__name__)

gives_up(SCAN_DOCUMENT)(give_up)  # scan_error: never clean without an OK


# clamd down or unsure (ScanFailed), the database or the blob store away: retry with
# backoff; DOCUMENT_SCAN_MAX_RETRIES (task_annotations) caps it, then scan_error.
@shared_task(name=SCAN_DOCUMENT, bind=True, acks_late=True, ignore_result=True,
             autoretry_for=(Exception,), retry_backoff=2, retry_backoff_max=300,
             retry_jitter=True, max_retries=5)
def scan(self, document_id: int) -> None:
    session = db_session()
    url = config("CLAMD_URL")
    if not url:
        log.warning("no CLAMD_URL: the document stays pending_scan",
                    extra={"document_id": document_id})
        return
    scan_document(session, storage(), client_from_url(url, timeout=30), document_id,
                  config("DOCUMENT_SCAN_MAX_BYTES"))
    session.commit()

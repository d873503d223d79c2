"""Scan uploaded documents, and ingest direct-to-store uploads, on the `documents` queue."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from documents import direct_uploads
from documents.scanner import client_from_url
from documents.scanning import give_up, scan_document
from documents.sniffing import allowlist_from
from documents.storage import StorageUnavailable
from store.task_names import INGEST_UPLOAD, SCAN_DOCUMENT
from tasks import register_give_up
from tasks.app_state import config, db_session, storage

log = logging.getLogger(__name__)

register_give_up(SCAN_DOCUMENT)(give_up)  # scan_error: never clean without an OK
register_give_up(INGEST_UPLOAD)(direct_uploads.give_up)  # failed: no document made


# clamd down or unsure (ScanFailed), the database or the blob store away: retry with
# backoff; DOCUMENT_SCAN_MAX_RETRIES (RETRY_LIMITS) caps it, then scan_error.
@shared_task(name=SCAN_DOCUMENT, bind=True, acks_late=True, ignore_result=True,
             autoretry_for=(Exception,), retry_backoff=2, retry_backoff_max=300,
             retry_jitter=True)
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


# The store or the database away: retry with backoff, DIRECT_UPLOAD_MAX_RETRIES
# (RETRY_LIMITS) times, then the upload is `failed`.
# What the bytes themselves get wrong is decided once, inside ingest (rejected).
@shared_task(name=INGEST_UPLOAD, bind=True, acks_late=True, ignore_result=True,
             autoretry_for=(Exception,), retry_backoff=2, retry_backoff_max=300,
             retry_jitter=True)
def ingest_upload(self, upload_id: int) -> None:
    session, blobs = db_session(), storage()
    upload = direct_uploads.ingest(session, blobs, upload_id, config("DOCUMENT_MAX_BYTES"),
                                   allowlist_from(current_app.config["DOCUMENT_ALLOWED_TYPES"]))
    session.commit()
    if upload is None:
        return
    try:
        direct_uploads.release(blobs, upload)
    except StorageUnavailable:
        log.warning("an ingested upload's object was left for retention",
                    extra={"upload_id": upload_id})

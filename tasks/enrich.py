"""Read clean documents' text and previews, on the `enrich` queue: OCR's CPU has
workers of its own (Procfile `enrich`), so it never delays a scan or a webhook."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from documents.text import enrich
from documents.text.sandbox import Limits
from store.task_names import EXTRACT_TEXT
from tasks import register_give_up
from tasks.app_state import db_session, storage

register_give_up(EXTRACT_TEXT)(enrich.give_up)  # failed: the document stays searchable by name


# The store or the database away: retry with backoff, EXTRACT_TEXT_MAX_RETRIES
# (RETRY_LIMITS) times, then failed. What the file itself does (a bomb, a parser
# error) is decided once, inside the sandbox (limited or failed), never retried.
@shared_task(name=EXTRACT_TEXT, bind=True, acks_late=True, ignore_result=True,
             autoretry_for=(Exception,), retry_backoff=5, retry_backoff_max=300,
             retry_jitter=True)
def extract_text(self, document_id: int) -> None:
    session = db_session()
    enrich.extract(session, storage(), document_id, Limits.from_config(current_app.config))
    session.commit()

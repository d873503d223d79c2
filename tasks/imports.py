"""Run bulk imports on the `imports` queue."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from documents.imports import ImportSettings, give_up, run_import
from store.task_names import RUN_IMPORT
from tasks import register_give_up
from tasks.app_state import db_session, storage

log = logging.getLogger(__name__)

register_give_up(RUN_IMPORT)(give_up)


# Resumable: a retry or a redelivery (worker lost) continues after the last
# committed batch. IMPORT_MAX_RETRIES (RETRY_LIMITS) caps the retries.
@shared_task(name=RUN_IMPORT, bind=True, acks_late=True, ignore_result=True,
             autoretry_for=(Exception,), retry_backoff=2, retry_backoff_max=300,
             retry_jitter=True)
def run(self, import_id: int) -> None:
    status = run_import(db_session(), storage(), import_id,
                        ImportSettings.from_config(current_app.config))
    log.info("import finished", extra={"import_id": import_id, "status": status})

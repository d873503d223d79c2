"""Run bulk imports on the `imports` queue."""
from __future__ import annotations

import logging

from celery import shared_task

from flask import current_app

from documents.imports import ImportSettings, fail_import, run_import
from store.task_names import RUN_IMPORT
from tasks import config, db_session, retry_or_give_up, storage, when_lost_too_often

log = logging.getLogger(__name__)


@shared_task(name=RUN_IMPORT, bind=True, acks_late=True, ignore_result=True,
             max_retries=None)
def run(self, import_id: int) -> None:
    """Resumable: a redelivery (worker lost) or retry continues after the last batch."""
    session = db_session()
    try:
        status = run_import(session, storage(), import_id,
                            ImportSettings.from_config(current_app.config))
        log.info("import finished", extra={"import_id": import_id, "status": status})
    except Exception as exc:
        retry_or_give_up(self, exc, config("IMPORT_MAX_RETRIES"),
                         lambda: fail_import(session, import_id, "The import kept failing."),
                         "import", import_id=import_id)


@when_lost_too_often(RUN_IMPORT)
def abandon_import(session, import_id: int) -> None:
    fail_import(session, import_id, "The worker running this import died on every attempt.")

"""Scheduled jobs, as one Celery task on the `cron` queue."""
from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app

from cron.jobs import registry
from cron.runner import run_job as run_locked
from store.task_names import RUN_JOB
from tasks.app_state import db_session, redis_client
from tasks.celery_app import outbox_publisher

log = logging.getLogger(__name__)


# No retries: the next beat tick is the retry, and a job never queues behind itself
# (a held lock records skipped_locked). Per-job time limits come with each message.
@shared_task(name=RUN_JOB, bind=True, acks_late=True, ignore_result=True,
             max_retries=0)
def run_job(self, name: str, trigger: str = "beat") -> dict:
    job = registry(current_app.config).get(name)
    if job is None:
        log.warning("unknown or disabled job", extra={"job": name})
        return {"outcome": "unknown_job"}
    run = run_locked(db_session(), redis_client(), job, trigger=trigger,
                     config=current_app.config, publisher=outbox_publisher(self.app),
                     timeout_errors=(SoftTimeLimitExceeded,))
    return {"outcome": run.outcome, "detail": run.detail}

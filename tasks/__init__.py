"""What task modules share, and what the web may use of `tasks` without loading Celery
(the app's state and its accessors are in tasks.app_state).

The Celery wiring itself (`celery_init_app`, the config, the outbox publisher) lives
in `tasks.celery_app`, which only worker and beat processes (`tasks.worker`) and the
CLI commands that publish import: a web process never talks to the broker (the
workers' relay publishes what it commits), so it does not load Celery or kombu.

Task modules declare `@shared_task` with an explicit name (from store.task_names),
`acks_late=True`, `ignore_result=True` and a retry policy; they never import
`webapp`. Each task runs inside the Flask app context, so it gets its own DB
session per run. What giving up means for a task (retries spent, or a worker that
keeps dying) is registered once with `register_give_up(NAME)`, and each task's retry
cap is one setting named in RETRY_LIMITS.
"""
from __future__ import annotations

from typing import Callable

from store.task_names import (
    EXTRACT_TEXT,
    FETCH_MEDIA,
    INGEST_UPLOAD,
    PROCESS_EVENT,
    RUN_IMPORT,
    SCAN_DOCUMENT,
)
from tasks.app_state import db_session

QUEUES = ("webhooks", "documents", "imports", "cron", "deliveries", "enrich")
TASK_MODULES = ("tasks.system", "tasks.cron", "tasks.webhooks", "tasks.documents",
                "tasks.imports", "tasks.media", "tasks.deliveries", "tasks.enrich")

# task name -> what giving up means for it, called as fn(session, *args, **kwargs)
GIVE_UP: dict[str, Callable[..., None]] = {}
# task name -> the setting that caps its retries: the one place a cap is set. Celery's
# task_annotations make it each task's `max_retries`, so a decorator never names a
# number (the rest of each policy, backoff and what is retried, is on the task).
# Tasks that never retry (the job runner, ping) say max_retries=0 where declared.
RETRY_LIMITS = {
    PROCESS_EVENT: "WEBHOOK_MAX_RETRIES",
    FETCH_MEDIA: "MEDIA_FETCH_MAX_RETRIES",
    SCAN_DOCUMENT: "DOCUMENT_SCAN_MAX_RETRIES",
    INGEST_UPLOAD: "DIRECT_UPLOAD_MAX_RETRIES",
    RUN_IMPORT: "IMPORT_MAX_RETRIES",
    EXTRACT_TEXT: "EXTRACT_TEXT_MAX_RETRIES",
}


def register_give_up(task_name: str):
    """Register how `task_name` gives up for good: its retries are spent, or its
    worker died on every delivery. The function records the domain's final state."""
    def register(give_up: Callable[..., None]) -> Callable[..., None]:
        GIVE_UP[task_name] = give_up
        return give_up
    return register


def run_give_up(task_name: str, args: tuple, kwargs: dict) -> None:
    handler = GIVE_UP.get(task_name)
    if handler is None:
        return
    session = db_session()
    session.rollback()
    handler(session, *args, **kwargs)
    session.commit()

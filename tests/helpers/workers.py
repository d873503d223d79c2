"""Test apps as worker and beat processes build them: with a Celery app.

The web's `create_app` has none (tasks.celery_app); a test that runs or sends a
task gives its app one the way `tasks.worker` does.
"""
from __future__ import annotations

import contextlib

from celery import Celery
from flask import Flask

from tasks.celery_app import celery_init_app


def celery_of(app: Flask) -> Celery:
    """`app`'s Celery app, built once."""
    return app.extensions.get("celery") or celery_init_app(app)


def as_worker(app: Flask) -> Flask:
    """`app` with its Celery app, as the worker runs it."""
    celery_of(app)
    return app


@contextlib.contextmanager
def worker_request(task, task_id: str, *args):
    """Run `task` inside a request as a worker sets it: the message's id, its args, no
    retries yet."""
    task.push_request(id=task_id, args=list(args), kwargs={}, retries=0,
                      delivery_info={}, called_directly=False)
    try:
        yield
    finally:
        task.pop_request()


def process_as_worker(app: Flask, event_id: int, retries: int = 0) -> bool:
    """Run the process-event task for `event_id` as a worker would, on its `retries`-th
    retry; True if it asked to be retried (Celery's Retry), False if it finished."""
    from celery.exceptions import Retry

    from store.task_names import PROCESS_EVENT

    task = celery_of(app).tasks[PROCESS_EVENT]
    with worker_request(task, f"process-{event_id}-{retries}", event_id):
        task.request.retries = retries
        try:
            task(event_id)
        except Retry:
            return True
    return False

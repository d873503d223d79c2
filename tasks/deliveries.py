"""Send deliveries on the `deliveries` queue: one attempt per message.

A failed attempt is not retried by Celery: the delivery goes back to the database
with its next due time (deliveries/sending.py), and the dispatcher hands it out
again when that comes (deliveries/dispatch.py). So nothing waits in the broker, and
a worker lost mid-send leaves the delivery `sending` until DELIVERY_REDRIVE_AFTER.
"""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from deliveries.sending import HttpSessions, SendSettings, deliver
from store.task_names import DELIVER
from tasks.app_state import db_session

log = logging.getLogger(__name__)

_http = HttpSessions()  # per process: keep-alive connections to each receiver


@shared_task(name=DELIVER, acks_late=True, ignore_result=True, max_retries=0)
def deliver_one(delivery_id: int) -> None:
    session = db_session()
    attempt = deliver(session, delivery_id, SendSettings.from_config(current_app.config), _http)
    if attempt is not None and not attempt.succeeded:
        log.info("delivery attempt failed", extra={
            "delivery_id": delivery_id, "destination_id": attempt.destination_id,
            "status_code": attempt.status_code, "error": attempt.error, "final": attempt.final})

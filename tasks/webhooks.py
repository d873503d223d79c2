"""Process stored webhook events on the `webhooks` queue."""
from __future__ import annotations

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError

from store.task_names import PROCESS_EVENT
from tasks import config, db_session, when_lost_too_often
from webhooks.models import PROCESSED, WebhookEvent
from webhooks.processing import EventNotFound, process, record_failure
from store.payloads import PayloadError

log = logging.getLogger(__name__)


@shared_task(name=PROCESS_EVENT, bind=True, acks_late=True,
             ignore_result=True, max_retries=None)
def process_event(self, event_id: int) -> None:
    """Retry with exponential backoff and full jitter, then park the event as dead.

    A payload that can never be handled goes dead at once. Countdowns stay far
    below the broker visibility timeout, so a waiting retry is never redelivered.
    """
    session = db_session()
    try:
        process(session, event_id)
        session.commit()
        return
    except EventNotFound:
        log.warning("webhook event not found", extra={"event_id": event_id})
        return
    except Exception as exc:
        session.rollback()
        attempt = self.request.retries
        dead = isinstance(exc, PayloadError) or attempt >= config("WEBHOOK_MAX_RETRIES")
        try:
            record_failure(session, event_id, exc, dead=dead)
            session.commit()
        except DBAPIError:
            # The database is away: nothing can be recorded, and letting this raise
            # would ack the message and leave the event to the slow redrive. Retry.
            session.rollback()
            dead = False
        log.warning("webhook handler failed", extra={
            "event_id": event_id, "attempt": attempt + 1, "dead": dead,
            "error": type(exc).__name__})
        if dead:
            return
        countdown = get_exponential_backoff_interval(
            factor=config("WEBHOOK_RETRY_BACKOFF"), retries=attempt,
            maximum=config("WEBHOOK_RETRY_BACKOFF_MAX"), full_jitter=True)
        raise self.retry(exc=exc, countdown=countdown)


class WorkerLost(Exception):
    pass


@when_lost_too_often(PROCESS_EVENT)
def park_event(session, event_id: int) -> None:
    event = session.get(WebhookEvent, event_id)
    if event is not None and event.status != PROCESSED:
        record_failure(session, event_id, WorkerLost("its worker died on every delivery"),
                       dead=True)

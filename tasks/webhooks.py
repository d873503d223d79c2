"""Process stored webhook events on the `webhooks` queue."""
from __future__ import annotations

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError

from store.task_names import PROCESS_EVENT
from tasks import register_give_up
from tasks.app_state import config, db_session, payment_status_clients, sources
from webhooks.processing import (
    Context,
    EventNotFound,
    is_final,
    park,
    process,
    record_failure,
)

log = logging.getLogger(__name__)

register_give_up(PROCESS_EVENT)(park)


# The retry path is written out rather than declared (autoretry_for): every failed
# attempt is recorded on the event itself (failed, attempts, last_error) in the
# database the handler just rolled back, the domain decides when it is final (a
# PayloadError is dead at once), and when the database is the thing that is down
# nothing can be recorded, so the task must still retry rather than let the error
# ack the message. Backoff and its cap are settings, read when a retry is made.
@shared_task(name=PROCESS_EVENT, bind=True, acks_late=True, ignore_result=True)
def process_event(self, event_id: int) -> None:
    """Retry with exponential backoff and full jitter, then park the event as dead.

    Countdowns stay far below the broker visibility timeout, so a waiting retry is
    never redelivered.
    """
    session = db_session()
    try:
        process(session, event_id, Context(sources(), payment_status_clients()))
        session.commit()
        return
    except EventNotFound:
        log.warning("webhook event not found", extra={"event_id": event_id})
        return
    except Exception as exc:
        session.rollback()
        attempt = self.request.retries
        dead = is_final(exc, attempt, self.max_retries)  # WEBHOOK_MAX_RETRIES
        try:
            record_failure(session, event_id, exc, dead=dead)
            session.commit()
        except DBAPIError:
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
        # Not dead past the cap means the database is away, which is waited out
        # however long it lasts (is_final): Celery's own cap must not end it.
        raise self.retry(exc=exc, countdown=countdown,
                         max_retries=max(self.max_retries, attempt + 1))

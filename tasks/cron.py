"""Scheduled jobs, as Celery tasks on the `cron` queue."""
from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task

from tasks import config, db_session, outbox_publisher
from webhooks.outbox import relay_unpublished

log = logging.getLogger(__name__)


# No retries: the next beat tick is the retry, and a relay never queues behind itself.
@shared_task(name="sluice.cron.relay_outbox", bind=True, acks_late=True,
             ignore_result=True, max_retries=0)
def relay_outbox(self) -> dict:
    result = relay_unpublished(
        db_session(), outbox_publisher(self.app),
        older_than=dt.timedelta(seconds=config("OUTBOX_RELAY_AFTER")),
        batch_size=config("OUTBOX_RELAY_BATCH"))
    if result.published or result.failed:
        log.info("outbox relayed", extra={"published": result.published,
                                          "failed": result.failed})
    return {"published": result.published, "failed": result.failed}

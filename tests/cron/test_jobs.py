import datetime as dt
import json

import pytest

from cron.jobs import registry
from cron.runner import run_job
from store.db import utcnow
from store.outbox import enqueue
from tasks.celery_app import outbox_publisher
from tests.helpers.outbox import queued, relay
from tests.helpers.workers import as_worker, celery_of
from webapp.extensions import db
from webhooks.models import WebhookEvent


def event(session, key, status, age_seconds) -> WebhookEvent:
    then = utcnow() - dt.timedelta(seconds=age_seconds)
    row = WebhookEvent(source="stripe", event_key=key, kind="payment", provider="stripe",
                       body=json.dumps({"id": key}).encode(), status=status,
                       received_at=then, enqueued_at=then)
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def app(worker_app):
    """Jobs run in the worker, whose commits publish."""
    return worker_app


def run(app, name):
    return run_job(db.session, app.extensions["sluice.redis"], registry(app.config)[name],
                   trigger="manual", config=app.config,
                   publisher=outbox_publisher(celery_of(app)))


def test_redrive_requeues_only_events_stuck_past_the_cutoff(app, redis_db):
    with app.app_context():
        session = db.session
        stuck = event(session, "stuck", "received", 3600)
        event(session, "fresh", "received", 10)
        event(session, "done", "processed", 3600)
        event(session, "dead", "dead", 3600)
        session.commit()
        result = run(app, "redrive_stuck_work")
        assert result.outcome == "succeeded"
        assert result.detail["webhook_events_redriven"] == 1
        relay(app)
        assert [m["kwargs"] for m in queued(redis_db, "webhooks")] == [{"event_id": stuck.id}]
        session.refresh(stuck)
        assert utcnow() - stuck.enqueued_at < dt.timedelta(minutes=1)
        again = run(app, "redrive_stuck_work").detail
        assert again["webhook_events_redriven"] == 0  # not twice


def test_relay_job_publishes_the_whole_backlog_in_batches(make_app, redis_db):
    app = as_worker(make_app(OUTBOX_RELAY_AFTER=0,
                             OUTBOX_RELAY_BATCH=2))
    with app.app_context():
        session = db.session
        for i in range(5):
            enqueue(session, "sluice.ping", {"token": str(i)}, queue="cron")
        session.commit()
        result = run(app, "relay_outbox")
    assert result.detail == {"published": 5, "failed": 0}
    assert [m["kwargs"]["token"] for m in queued(redis_db, "cron")] == list("01234")

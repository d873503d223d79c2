"""The webhook handler task, called as a worker calls it: the database away, a
payload that can never be handled."""
import json

import pytest
from celery.exceptions import Retry

from tests.helpers.workers import celery_of, worker_request
from tests.services import free_port
from webapp import create_app
from webapp.extensions import db
from webhooks.models import WebhookEvent


def process_event_task(app):
    celery = celery_of(app)
    celery.loader.import_default_modules()
    return celery.tasks["sluice.webhooks.process_event"]


def test_a_handler_that_cannot_reach_the_database_retries_instead_of_dropping(
        app_config, redis_db, tmp_path, monkeypatch):
    # Raising the OperationalError would ack the message and strand the event
    # until the redrive; a Retry puts a new message, with a countdown, on the queue.
    monkeypatch.setenv("SLUICE_INSTANCE_PATH", str(tmp_path / "instance"))
    down = f"postgresql+psycopg://sluice@127.0.0.1:{free_port()}/down?connect_timeout=2"
    app = create_app({**app_config, "DATABASE_URL": down})
    process_event = process_event_task(app)
    try:
        with worker_request(process_event, "task-db-down", 42), pytest.raises(Retry):
            process_event(42)
    finally:
        app.extensions["sluice.db"].engine.dispose()

    queued = [json.loads(m) for m in redis_db.lrange("webhooks", 0, -1)]
    assert [m["headers"]["task"] for m in queued] == ["sluice.webhooks.process_event"]
    assert queued[0]["headers"]["retries"] == 1  # its countdown is jittered, 0 included


def test_a_payload_that_cannot_be_handled_goes_dead_and_its_claim_is_rolled_back(app):
    # process() marks the event processed before it runs the handler; the handler's
    # failure must take that mark away, leaving one recorded attempt and no processed_at.
    process_event = process_event_task(app)
    with app.app_context():
        session = db.session
        event = WebhookEvent(source="stripe", event_key="evt_no_object", kind="payment",
                             provider="stripe",
                             body=json.dumps({"id": "evt_no_object", "type":
                                              "payment_intent.succeeded"}).encode())
        session.add(event)
        session.commit()
        event_id = event.id

    with worker_request(process_event, "task-bad-payload", event_id):
        process_event(event_id)  # goes dead at once: no Retry raised

    with app.app_context():
        stored = db.session.get(WebhookEvent, event_id)
        assert (stored.status, stored.attempts, stored.processed_at) == ("dead", 1, None)
        assert stored.last_error.startswith("PayloadError")


def test_a_last_retry_that_meets_the_database_coming_back_is_not_parked_dead(
        app, monkeypatch):
    # Seen under a PostgreSQL restart: the handler's statement fails on the way down
    # (or while the server starts up), the failure is recorded a moment later on a
    # working connection, and with the retries spent the event was parked dead for
    # an outage that was nobody's fault.
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    import tasks.webhooks
    refused = create_engine(f"postgresql+psycopg://sluice@127.0.0.1:{free_port()}/down")
    with pytest.raises(OperationalError) as outage:
        refused.connect()

    def database_away(session, event_id, sources=None):
        raise outage.value
    monkeypatch.setattr(tasks.webhooks, "process", database_away)
    process_event = process_event_task(app)
    with app.app_context():
        event = WebhookEvent(source="stripe", event_key="evt_outage", kind="payment",
                             provider="stripe", body=b'{"id": "evt_outage"}')
        db.session.add(event)
        db.session.commit()
        event_id = event.id

    last = app.config["WEBHOOK_MAX_RETRIES"]
    with worker_request(process_event, "task-outage", event_id):
        process_event.request.retries = last
        with pytest.raises(Retry):
            process_event(event_id)

    with app.app_context():
        stored = db.session.get(WebhookEvent, event_id)
        assert (stored.status, stored.attempts) == ("failed", 1)
        assert stored.last_error.startswith("OperationalError")

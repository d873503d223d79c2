import datetime as dt
import os
import time

from sqlalchemy import select

from cron.jobs import registry
from cron.models import JobRun
from cron.runner import run_job
from deliveries.models import Delivery, DeliveryAttempt, Destination
from store.db import utcnow
from store.idempotency import IdempotencyKey
from store.outbox import OutboxMessage
from webapp.extensions import db
from webhooks.models import WebhookEvent


def event(session, key, status, days_old):
    then = utcnow() - dt.timedelta(days=days_old)
    session.add(WebhookEvent(source="s", event_key=key, kind="payment", provider="stripe",
                             body=b"{}", status=status, received_at=then, enqueued_at=then))


def test_purge_drops_old_bodies_keeps_their_records_and_clears_old_rows(app):
    old, recent = utcnow() - dt.timedelta(days=40), utcnow() - dt.timedelta(days=1)
    temp = os.path.join(app.config["STORAGE_DIR"], "tmp")
    os.makedirs(temp)
    for name, age in (("stale.part", 2 * 86400), ("live.part", 60)):
        path = os.path.join(temp, name)
        open(path, "wb").close()
        os.utime(path, (time.time() - age, time.time() - age))
    with app.app_context():
        session = db.session
        event(session, "old-done", "processed", 40)
        event(session, "old-dead", "dead", 40)
        event(session, "old-waiting", "received", 40)  # never drop unprocessed work
        event(session, "new-done", "processed", 1)
        for when in (old, recent):
            session.add(JobRun(job="x", trigger="beat", started_at=when, outcome="succeeded",
                               host="h", pid=1, detail={}))
            session.add(OutboxMessage(task_name="t", kwargs={}, created_at=when,
                                      published_at=when, attempts=0))
        session.add(OutboxMessage(task_name="t", kwargs={}, created_at=old, attempts=0))
        # a delivery's history goes after the event log's days; one still due stays
        target = Destination(name="d", url="https://example.com/", event_types=["*"],
                             allowed_networks=[], secret="whsec_x", state="active",
                             paused=False, allow_http=False, consecutive_failures=0)
        session.add(target)
        session.flush()
        for status, when in (("succeeded", old), ("failed", old), ("pending", old),
                             ("succeeded", recent)):
            delivery = Delivery(destination_id=target.id, event_id=hash((status, when)) % 10**9,
                                status=status, attempts=1, created_at=when)
            session.add(delivery)
            session.flush()
            session.add(DeliveryAttempt(delivery_id=delivery.id, destination_id=target.id,
                                        attempted_at=when, latency=0.1, succeeded=True))
        for key, expires in (("gone", recent), ("kept", utcnow() + dt.timedelta(hours=1))):
            session.add(IdempotencyKey(client_id=1, key=key, method="POST", path="/v1/x",
                                       fingerprint="f", expires_at=expires))
        session.commit()
        run = run_job(session, app.extensions["sluice.redis"],
                      registry(app.config)["purge_retention"], trigger="manual",
                      config=app.config)
        assert run.detail == {"webhook_bodies_dropped": 2, "job_runs_deleted": 1,
                              "outbox_rows_deleted": 1, "events_deleted": 0,
                              "deliveries_deleted": 2, "delivery_attempts_deleted": 3,
                              "idempotency_keys_deleted": 1, "temp_files_removed": 1,
                              "orphan_blobs_removed": 0, "uploads_expired": 0,
                              "upload_objects_removed": 0}
        bodies = dict(session.execute(select(WebhookEvent.event_key, WebhookEvent.body)).all())
        assert bodies == {"old-done": None, "old-dead": None, "old-waiting": b"{}",
                          "new-done": b"{}"}
        assert session.scalar(select(WebhookEvent.status).where(
            WebhookEvent.event_key == "old-done")) == "processed"
        assert sorted(session.scalars(select(Delivery.status))) == ["pending", "succeeded"]
        assert list(session.scalars(select(IdempotencyKey.key))) == ["kept"]
        # The old unpublished row stays: the relay still owes it.
        assert len(session.scalars(select(OutboxMessage)).all()) == 2
    assert os.listdir(temp) == ["live.part"]

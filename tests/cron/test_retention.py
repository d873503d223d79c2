import datetime as dt
import os
import time

import pytest
from sqlalchemy import select, update

from cron.jobs import registry
from cron.models import JobRun
from cron.runner import run_job
from deliveries.models import Delivery, DeliveryAttempt, Destination
from documents.models import Document
from store.audit import AuditLog
from store.db import utcnow
from store.idempotency import IdempotencyKey
from store.outbox import OutboxMessage
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from tests.documents.test_deletion import blob_exists
from webapp.config import ConfigError
from webapp.extensions import db
from webhooks.models import WebhookEvent
from whatsapp.models import WhatsAppMessage


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
        assert run.detail == {"webhook_bodies_dropped": 2, "message_texts_redacted": 0,
                              "documents_deleted": 0, "job_runs_deleted": 1,
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


def test_a_sources_own_days_old_message_texts_and_old_documents(make_app, monkeypatch):
    monkeypatch.setenv("T_SHORT", "whsec_short")
    app = make_app(RETENTION_DOCUMENT_DAYS=10, WEBHOOK_SOURCES={"sources": {
        "short": {"scheme": "stripe", "secrets_env": "T_SHORT", "retention_days": 2}}})
    owner = make_owners(app)["alice"]
    client = app.test_client()
    old_pdf, new_pdf = files.pdf("kept too long"), files.pdf("recent")
    old_id = upload(client, owner, old_pdf).get_json()["id"]
    new_id = upload(client, owner, new_pdf).get_json()["id"]
    with app.app_context():
        session = db.session
        for source in ("short", "other"):
            session.add(WebhookEvent(source=source, event_key=f"{source}-3d", kind="payment",
                                     provider="stripe", body=b"{}", status="processed",
                                     received_at=utcnow() - dt.timedelta(days=3)))
        for wamid, age in (("wamid.OLD", 100), ("wamid.NEW", 10)):
            session.add(WhatsAppMessage(wamid=wamid, direction="inbound", phone="15550001111",
                                        text="hello", status="received",
                                        created_at=utcnow() - dt.timedelta(days=age)))
        session.execute(update(Document).where(Document.id == old_id).values(
            created_at=utcnow() - dt.timedelta(days=20)))
        session.commit()
        run = run_job(session, app.extensions["sluice.redis"],
                      registry(app.config)["purge_retention"], trigger="manual",
                      config=app.config)
        assert run.outcome == "succeeded", run.error
        assert (run.detail["webhook_bodies_dropped"], run.detail["message_texts_redacted"],
                run.detail["documents_deleted"]) == (1, 1, 1)
        bodies = dict(session.execute(select(WebhookEvent.source, WebhookEvent.body)).all())
        assert bodies == {"short": None, "other": b"{}"}
        messages = {row.wamid: (row.phone, row.text) for row in session.scalars(
            select(WhatsAppMessage))}
        assert messages == {"wamid.OLD": (None, None), "wamid.NEW": ("15550001111", "hello")}
        assert list(session.scalars(select(Document.id))) == [new_id]
        assert [row.actor for row in session.scalars(select(AuditLog).where(
            AuditLog.action == "document.delete"))] == ["system:retention"]
    assert not blob_exists(app, old_pdf) and blob_exists(app, new_pdf)


def test_a_bad_retention_days_stops_the_start(make_app):
    with pytest.raises(ConfigError, match="retention_days"):
        make_app(WEBHOOK_SOURCES={"sources": {
            "short": {"scheme": "stripe", "retention_days": 0}}}).extensions

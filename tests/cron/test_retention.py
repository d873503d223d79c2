import datetime as dt
import os
import time

import pytest
from sqlalchemy import select, text, update

from cron.jobs import registry
from cron.models import JobRun
from cron.runner import run_job
from deliveries.models import Delivery, DeliveryAttempt, Destination
from documents.models import Document
from store import subjects
from store.audit import AuditLog
from store.db import utcnow
from store.idempotency import IdempotencyKey
from store.outbox import OutboxMessage
from tests.documents import files
from tests.documents.conftest import make_owners, upload
from tests.documents.test_deletion import blob_exists
from tests.helpers.jobs import run_now
from tests.webhooks.conftest import STRIPE_SECRET
from tests.webhooks.test_ingest_api import post_stripe, stripe_event
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
        # older than RETENTION_WEBHOOK_BODY_DAYS (30), inside DEDUP_WINDOW_DAYS (35)
        event(session, "old-done", "processed", 32)
        event(session, "old-dead", "dead", 32)
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
        assert run.detail == {"webhook_bodies_dropped": 2,
                              "message_texts_redacted": 0,
                              "documents_deleted": 0, "import_rows_deleted": 0,
                              "job_runs_deleted": 1,
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


def purge(app) -> dict:
    return run_now(app, "purge_retention")


def expire(app) -> dict:
    return run_now(app, "expire_webhook_events")


def test_past_the_dedup_window_finished_rows_go_and_a_repeat_of_their_key_is_new(
        make_app, monkeypatch):
    monkeypatch.setenv("T_STRIPE", STRIPE_SECRET)
    app = make_app(WEBHOOK_SOURCES={"sources": {"stripe": {"scheme": "stripe",
                                                           "secrets_env": "T_STRIPE"}}})
    client = app.test_client()
    ids = {}
    for key in ("evt_done", "evt_dead", "evt_failed", "evt_received", "evt_recent"):
        answer = post_stripe(client, stripe_event(key))
        assert answer.status_code == 202
        ids[key] = answer.get_json()["id"]
    with app.app_context():
        session = db.session
        for key, status, age in (("evt_done", "processed", 36), ("evt_dead", "dead", 36),
                                 ("evt_failed", "failed", 36), ("evt_received", "received", 36),
                                 ("evt_recent", "processed", 34)):
            session.execute(update(WebhookEvent).where(WebhookEvent.id == ids[key]).values(
                status=status, received_at=utcnow() - dt.timedelta(days=age)))
        subjects.link(session, subjects.WEBHOOK_EVENT, ids["evt_done"], {"a" * 64})
        subjects.link(session, subjects.WEBHOOK_EVENT, ids["evt_recent"], {"b" * 64})
        session.commit()
        assert purge(app)["webhook_bodies_dropped"] == 3
        assert expire(app) == {"webhook_events_deleted": 2, "webhook_months_added": 0}
        left = dict(session.execute(select(WebhookEvent.event_key, WebhookEvent.status)).all())
        # work still owed stays whatever its age; the recent one keeps its row, not its body
        assert left == {"evt_failed": "failed", "evt_received": "received",
                        "evt_recent": "processed"}
        assert list(session.scalars(select(subjects.SubjectLink.record_id))) == [
            ids["evt_recent"]]
        assert expire(app)["webhook_events_deleted"] == 0  # a second run finds nothing
    # a repeat of a forgotten key is a new delivery; of a remembered one, a duplicate
    again = post_stripe(client, stripe_event("evt_done"))
    assert again.status_code == 202 and again.get_json()["id"] not in ids.values()
    repeat = post_stripe(client, stripe_event("evt_recent"))
    assert repeat.get_json() == {"id": ids["evt_recent"], "status": "duplicate"}


def test_a_dedup_window_of_zero_keeps_every_row(make_app):
    app = make_app(DEDUP_WINDOW_DAYS=0)
    with app.app_context():
        event(db.session, "ancient", "processed", 400)
        db.session.commit()
        assert expire(app)["webhook_events_deleted"] == 0
        assert purge(app)["webhook_bodies_dropped"] == 1  # the body still goes
        assert db.session.scalar(select(WebhookEvent.body)) is None
        assert db.session.scalar(select(WebhookEvent.event_key)) == "ancient"


@pytest.mark.parametrize("settings, message", [
    ({"DEDUP_WINDOW_DAYS": -1}, "DEDUP_WINDOW_DAYS must be 0"),
    ({"DEDUP_WINDOW_DAYS": 20}, "RETENTION_WEBHOOK_BODY_DAYS must not exceed"),
    ({"WEBHOOK_SOURCES": {"sources": {"long": {"scheme": "stripe", "retention_days": 60}}}},
     r"source long: retention_days \(60\) is longer than DEDUP_WINDOW_DAYS \(35\)"),
])
def test_a_body_kept_longer_than_its_row_stops_the_start(make_app, settings, message):
    with pytest.raises(ConfigError, match=message):
        make_app(**settings).extensions


def test_a_bad_retention_days_stops_the_start(make_app):
    with pytest.raises(ConfigError, match="retention_days"):
        make_app(WEBHOOK_SOURCES={"sources": {
            "short": {"scheme": "stripe", "retention_days": 0}}}).extensions


def month_gone_by(app):
    """On PostgreSQL, a month of webhook_events wholly past the dedup window, added as
    retention adds the months ahead (webhooks/partitions.py): its name and a time in it."""
    from tests import services
    from webhooks import partitions

    services.require_postgres()
    lower = partitions.first_of_month(utcnow() - dt.timedelta(days=120))
    with app.app_context():
        name = partitions.add(db.session.connection(), lower, partitions.month_after(lower))
        db.session.commit()
    return name, lower + dt.timedelta(days=3)


def months(app) -> set[str]:
    from webhooks import partitions

    with app.app_context():
        return {part.name for part in partitions.months(db.session.connection())}


@pytest.mark.parametrize("owed", [False, True])
def test_a_month_past_the_window_is_dropped_whole_unless_a_row_must_stay(
        make_app, monkeypatch, owed):
    monkeypatch.setenv("T_STRIPE", STRIPE_SECRET)
    app = make_app(WEBHOOK_SOURCES={"sources": {"stripe": {"scheme": "stripe",
                                                           "secrets_env": "T_STRIPE"}}})
    name, when = month_gone_by(app)
    client = app.test_client()
    ids = {key: post_stripe(client, stripe_event(key)).get_json()["id"]
           for key in ("evt_a", "evt_b", "evt_c", "evt_now")}
    with app.app_context():
        session = db.session
        session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(
            [ids["evt_a"], ids["evt_b"], ids["evt_c"]])).values(
            status="processed", received_at=when))  # the rows move into that month
        if owed:
            session.execute(update(WebhookEvent).where(WebhookEvent.id == ids["evt_c"])
                            .values(status="failed"))
        subjects.link(session, subjects.WEBHOOK_EVENT, ids["evt_a"], {"a" * 64})
        assert session.scalar(text(f"SELECT count(*) FROM {name}")) == 3
        session.commit()
        assert expire(app)["webhook_events_deleted"] == (2 if owed else 3)
        left = set(session.scalars(select(WebhookEvent.event_key)))
        linked = list(session.scalars(select(subjects.SubjectLink.record_id)))
    if owed:  # the month stays for the work it owes; its finished rows go one by one
        assert name in months(app) and left == {"evt_c", "evt_now"}
    else:
        assert name not in months(app) and left == {"evt_now"}
    assert linked == []
    again = post_stripe(client, stripe_event("evt_a"))
    assert again.status_code == 202 and again.get_json()["id"] not in ids.values()
    still = post_stripe(client, stripe_event("evt_c" if owed else "evt_now"))
    assert still.get_json()["status"] == "duplicate"


def test_the_months_or_days_ahead_are_added_and_only_a_past_one_is_dropped(app):
    from sqlalchemy.exc import DBAPIError

    from tests import services
    from webhooks import partitions

    services.require_postgres()
    with app.app_context():
        connection = db.session.connection()
        last = max(part.upper for part in partitions.months(connection) if part.upper)
        ahead = partitions.first_of_month(utcnow())
        for _ in range(partitions.MONTHS_AHEAD + 1):
            ahead = partitions.month_after(ahead)
        assert last == ahead  # this month and three more, from the migration on
        connection.execute(text("SAVEPOINT before"))
        added = partitions.add_ahead(connection, utcnow() + dt.timedelta(days=40))
        assert len(added) in (1, 2) and months(app) >= set(added)
        connection.execute(text("ROLLBACK TO SAVEPOINT before"))
        # EVENT_PARTITION_SPAN=day: days, from where the months already added end
        connection.execute(text("SAVEPOINT before"))
        later = last + dt.timedelta(days=10)
        added = partitions.add_ahead(connection, later, "day")
        days = [part for part in partitions.months(connection) if part.name in added]
        assert len(days) == 10 + partitions.DAYS_AHEAD + 1
        assert [part.lower for part in days] == [last + dt.timedelta(days=n)
                                                 for n in range(len(days))]
        assert all(part.upper - part.lower == dt.timedelta(days=1) for part in days)
        connection.execute(text("ROLLBACK TO SAVEPOINT before"))
        for name in ("webhook_events_default", "webhook_events", "documents"):
            connection.execute(text("SAVEPOINT before"))
            with pytest.raises(DBAPIError, match="not a month of webhook_events"):
                partitions.drop(connection, name)
            connection.execute(text("ROLLBACK TO SAVEPOINT before"))


def test_a_row_in_the_default_partition_is_said_to_stop_its_month_and_expires_there(app):
    """A row no partition covered lands in the DEFAULT partition: adding the partition
    that would cover it then fails, the run says so, and the row expires in place."""
    from tests import services
    from webhooks import partitions

    services.require_postgres()
    with app.app_context():
        connection = db.session.connection()
        last = max((part for part in partitions.months(connection) if part.upper),
                   key=lambda part: part.upper)
        partitions.drop(connection, last.name)  # as if no run had added it
        then = last.lower + dt.timedelta(days=1)
        db.session.add(WebhookEvent(source="s", event_key="stray", kind="payment",
                                    provider="stripe", status="processed",
                                    received_at=then, enqueued_at=then))
        event(db.session, "old", "processed", 400)  # before every partition: DEFAULT
        db.session.commit()
        in_default = db.session.scalar(text(f"SELECT count(*) FROM {partitions.DEFAULT}"))
        detail = expire(app)
        left = set(db.session.scalars(select(WebhookEvent.event_key)))
    assert in_default == 2
    assert detail == {"webhook_events_deleted": 1, "webhook_months_added": 0,
                      "webhook_months_refused": "CheckViolation"}
    assert left == {"stray"}

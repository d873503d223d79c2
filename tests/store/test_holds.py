"""Legal holds (store/holds.py): what a hold covers is not deleted by its owner, by
retention or an erasure (tests/privacy); a subject is named by its blind index only."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from cron.jobs import registry
from cron.runner import run_job
from documents.models import Document
from store import sealing
from store.audit import AuditLog
from store.db import utcnow
from tests.documents import files
from tests.documents.conftest import upload
from tests.imports import archives
from tests.imports.conftest import make_owners, post_import
from tests.imports.test_imports import run
from tests.outcomes.test_event_feed import apply, token
from tests.webapp.test_ops import csrf_of, operator, ops_app, webhook_env  # noqa: F401
from tests.webhooks.test_processing import stripe
from webapp.extensions import db
from webhooks.models import WebhookEvent
from whatsapp.models import WhatsAppMessage

PHONE = "+44 7700 900123"


def place(client, admin, **body):
    return client.post("/v1/admin/holds", json=body,
                       headers={"Authorization": admin["Authorization"]})


def test_a_held_document_is_not_deleted_until_the_hold_is_released(app, client):
    alice, admin = make_owners(app)["alice"], token(app, "legal", ["admin"])
    document = upload(client, alice, files.pdf("evidence")).get_json()
    placed = place(client, admin, document=document["id"], reason="case 2026-17")
    assert placed.status_code == 201
    hold = placed.get_json()
    assert (hold["scope"], hold["document_id"], hold["released_at"]) == \
        ("document", document["id"], None)
    path = f"/v1/documents/{document['id']}"
    refused = client.delete(path, headers={"Authorization": alice["Authorization"]})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "legal_hold"
    assert client.get(path, headers={"Authorization": alice["Authorization"]}).status_code \
        == 200
    listed = client.get("/v1/admin/holds", headers={"Authorization": admin["Authorization"]})
    assert [h["id"] for h in listed.get_json()["holds"]] == [hold["id"]]
    released = client.delete(f"/v1/admin/holds/{hold['id']}",
                             headers={"Authorization": admin["Authorization"]})
    assert released.status_code == 204
    assert client.delete(f"/v1/admin/holds/{hold['id']}", headers={
        "Authorization": admin["Authorization"]}).status_code == 404
    assert client.get("/v1/admin/holds", headers={
        "Authorization": admin["Authorization"]}).get_json()["holds"] == []
    everything = client.get("/v1/admin/holds?released=true", headers={
        "Authorization": admin["Authorization"]}).get_json()["holds"]
    assert everything[0]["released_by"] == "client:legal"
    assert client.delete(path, headers={"Authorization": alice["Authorization"]}).status_code \
        == 204
    with app.app_context():
        actions = list(db.session.scalars(select(AuditLog.action).where(
            AuditLog.subject_type == "legal_hold")))
    assert actions == ["hold.place", "hold.release"]


def test_an_owner_hold_covers_every_document_of_its_imports(app, client):
    alice, admin = make_owners(app)["alice"], token(app, "legal", ["admin"])
    job = post_import(client, alice, archives.build([("a.pdf", files.pdf("held a"))]))
    run(app, job.get_json()["id"])
    assert place(client, admin, owner=alice["id"], reason="audit").status_code == 201
    refused = client.delete(f"/v1/imports/{job.get_json()['id']}?documents=true",
                            headers={"Authorization": alice["Authorization"]})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "legal_hold"
    with app.app_context():
        assert db.session.scalar(select(Document.id)) is not None


def test_a_subject_is_named_by_its_blind_index_and_retention_keeps_its_messages(app, client):
    admin = token(app, "legal", ["admin"])
    placed = place(client, admin, phone=PHONE, reason="subject access request 88")
    assert placed.status_code == 201
    body = placed.get_data(as_text=True)
    assert "7700" not in body
    assert placed.get_json()["subject_index"] == sealing.blind_index("phone", "447700900123")
    with app.app_context():
        details = [str(row.detail) for row in db.session.scalars(select(AuditLog))]
        assert not any("7700" in detail for detail in details)
        old = utcnow() - dt.timedelta(days=100)
        for wamid, phone in (("wamid.HELD", "447700900123"), ("wamid.FREE", "15550001111")):
            db.session.add(WhatsAppMessage(
                wamid=wamid, direction="inbound", phone=phone, text="hi", status="received",
                phone_index=sealing.blind_index("phone", phone), created_at=old))
        db.session.commit()
        run_job(db.session, app.extensions["sluice.redis"],
                registry(app.config)["purge_retention"], trigger="manual", config=app.config)
        texts = dict(db.session.execute(select(WhatsAppMessage.wamid, WhatsAppMessage.text)).all())
    assert texts == {"wamid.HELD": "hi", "wamid.FREE": None}


def test_retention_passes_held_documents_by(make_app):
    app = make_app(RETENTION_DOCUMENT_DAYS=1)
    client, alice = app.test_client(), make_owners(app)["alice"]
    admin = token(app, "legal", ["admin"])
    kept = upload(client, alice, files.pdf("held past retention")).get_json()["id"]
    gone = upload(client, alice, files.pdf("not held")).get_json()["id"]
    place(client, admin, document=kept, reason="litigation")
    with app.app_context():
        db.session.execute(update(Document).values(created_at=utcnow() - dt.timedelta(days=5)))
        db.session.commit()
        run_job(db.session, app.extensions["sluice.redis"],
                registry(app.config)["purge_retention"], trigger="manual", config=app.config)
        assert list(db.session.scalars(select(Document.id))) == [kept]
    assert gone != kept


@pytest.mark.parametrize("body", [
    {"reason": "nothing named"},
    {"document": 1, "owner": 2, "reason": "two things"},
    {"phone": "+1 555", "email": "a@example.com", "reason": "two subjects"},
    {"document": 1},
    {"document": "1", "reason": "an id as text"},
    {"phone": "", "reason": "an empty phone"},
    {"document": 1, "reason": "x" * 501},
    {"document": 1, "reason": "a lone \ud9e5 surrogate"},
    {"owner": 2 ** 31, "reason": "past an INTEGER"},
    {"email": "a\ud9e5@example.com", "reason": "a lone surrogate"},
])
def test_a_hold_that_names_not_exactly_one_thing_or_no_reason_is_400(app, client, body):
    admin = token(app, "legal", ["admin"])
    response = place(client, admin, **body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] in ("invalid_hold", "invalid_request")


def test_a_hold_on_a_document_or_owner_that_does_not_exist_is_404(app, client):
    admin = token(app, "legal", ["admin"])
    for body in ({"document": 10 ** 9}, {"owner": 10 ** 9}, {"document": 2 ** 62 - 1},
                 {"owner": 2 ** 31 - 1}):
        response = place(client, admin, reason="case", **body)
        assert response.status_code == 404, body


def test_the_cli_places_lists_and_releases(app):
    runner = app.test_cli_runner()
    make_owners(app)
    placed = runner.invoke(args=["holds", "place", "--owner", "alice", "--reason", "tax audit"])
    assert placed.exit_code == 0, placed.output
    listed = runner.invoke(args=["holds", "list"])
    assert "owner" in listed.output and "tax audit" in listed.output
    hold_id = placed.output.split()[1]
    assert runner.invoke(args=["holds", "release", hold_id]).exit_code == 0
    assert "No holds." in runner.invoke(args=["holds", "list"]).output
    both = runner.invoke(args=["holds", "place", "--phone", "1", "--email", "a@b.c",
                               "--reason", "x"])
    assert both.exit_code != 0


def test_the_console_lists_holds_and_releases_one(ops_app, operator):  # noqa: F811
    admin = token(ops_app, "legal", ["admin"])
    hold = place(ops_app.test_client(), admin, email="Ada@Example.com", reason="DPO case 4")
    hold_id = hold.get_json()["id"]
    page = operator.get("/ops/holds").get_data(as_text=True)
    assert "DPO case 4" in page and "example.com" not in page.lower()
    released = operator.post(f"/ops/holds/{hold_id}/release",
                             data={"csrf_token": csrf_of(operator, "/ops/holds")})
    assert released.status_code == 303
    assert "released" in operator.get("/ops/holds").get_data(as_text=True)
    refused = operator.post(f"/ops/holds/{hold_id}/release", data={})  # no CSRF token
    assert refused.status_code == 400


def test_retention_keeps_the_bodies_that_name_a_held_subject(app, client):
    admin = token(app, "legal", ["admin"])
    apply(app, stripe("evt_held", "payment_intent.created", 1, receipt_email="Held@Example.com"),
          stripe("evt_free", "payment_intent.created", 2, intent="pi_2",
                 receipt_email="free@example.com"))
    with app.app_context():  # a dead delivery the worker never linked names them too
        db.session.add(WebhookEvent(
            source="stripe", event_key="evt_dead", kind="payment", provider="stripe",
            status="dead", body=b'{"data": {"object": {"email": "held@example.com"}}}'))
        db.session.commit()
    assert place(client, admin, email="held@example.com", reason="case 9").status_code == 201
    with app.app_context():
        db.session.execute(update(WebhookEvent).values(
            received_at=utcnow() - dt.timedelta(days=60)))
        db.session.commit()
        for job in ("purge_retention", "expire_webhook_events"):
            run_job(db.session, app.extensions["sluice.redis"], registry(app.config)[job],
                    trigger="manual", config=app.config)
        kept = list(db.session.execute(select(WebhookEvent.body.is_not(None))
                                       .order_by(WebhookEvent.id)).scalars())
    # past DEDUP_WINDOW_DAYS (35) too: evt_free's row is gone, evt_held's and the dead
    # one's stay whole
    assert kept == [True, True]

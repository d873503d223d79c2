"""Erasure by data subject (privacy/erasure.py), through the real ingest, worker task
code, database and blob store: after it, a dump of the database, every sealed value
read back in clear, and every object in the store hold the person nowhere, in any
spelling, while the payment, the event keys and other people's data stay."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from deliveries.models import Delivery, DeliveryAttempt
from documents.models import Document
from payments.ledger import Payment
from store import sealing
from store.audit import AuditLog
from store.events import Event
from store.sealing import sealed_columns
from store.task_names import PROCESS_EVENT
from tests.documents import files
from tests.outcomes.test_event_feed import apply, token
from tests.store.test_sealing import dump
from tests.webapp.test_ops import csrf_of, operator, ops_app  # noqa: F401 - fixtures
from tests.webhooks import signing
from tests.webhooks.conftest import META_SECRET, SOURCES, STRIPE_SECRET, webhook_env  # noqa: F401
from tests.webhooks.test_processing import stripe, whatsapp
from tests.webhooks.test_whatsapp_media import (  # noqa: F401 - fixtures
    fetch_all,
    media_sources,
    providers,
    run_worker_task,
)
from webapp.extensions import db
from webapp.models import metadata
from webhooks.models import WebhookEvent
from whatsapp.models import WhatsAppMedia, WhatsAppMessage

PHONE, EMAIL, OTHER = "447700900123", "Ada.Marker@Example.com", "15550001111"
SPELLINGS = ("447700900123", "+447700900123", "+44 7700 900123", "7700900123",
             "7700 900123", "ada.marker@example.com", "Ada.Marker@Example.com")
TEXT = "my passport number is 991 and you can call me on +44 7700 900123"


@pytest.fixture
def erasing(committing_app, providers, webhook_env):  # noqa: F811 - fixtures
    """An app on a database of its own (to be dumped), with Stripe and a WhatsApp
    source whose media go into the document pipeline, and an admin token."""
    sources = {"sources": {**SOURCES["sources"], **media_sources(providers)["sources"]}}
    app = committing_app("erasure", WEBHOOK_SOURCES=sources)
    token(app, "wa-inbox", ["documents:read"])
    return app, token(app, "dpo", ["admin"])


def post(app, path: str, body: bytes, headers: dict) -> int:
    response = app.test_client().post(path, data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def meta(app, messages=(), statuses=(), process=True) -> None:
    body = json.dumps(whatsapp(messages, statuses)).encode()
    event_id = post(app, "/webhooks/wa", body, signing.meta_headers(body, META_SECRET))
    if process:
        run_worker_task(app, PROCESS_EVENT, event_id=event_id)


def pay(app, event: dict) -> None:
    body = json.dumps(event).encode()
    event_id = post(app, "/webhooks/stripe", body, signing.stripe_headers(body, STRIPE_SECRET))
    run_worker_task(app, PROCESS_EVENT, event_id=event_id)


def text_message(wamid: str, phone: str, text: str) -> dict:
    return {"from": phone, "id": wamid, "timestamp": "1700000000", "type": "text",
            "text": {"body": text}}


def store_a_person(app, providers) -> None:  # noqa: F811
    """Everything one person leaves behind, and one message of someone else's."""
    meta(app, [text_message("wamid.ADA1", PHONE, TEXT)])
    providers.add("media-passport", files.pdf(f"passport of +44 7700 900123 {EMAIL}"),
                  "application/pdf")
    meta(app, [{"from": PHONE, "id": "wamid.ADA2", "timestamp": "1700000001",
                "type": "document", "document": {"id": "media-passport",
                                                 "mime_type": "application/pdf",
                                                 "filename": f"passport {PHONE}.pdf"}}])
    fetch_all(app)
    meta(app, statuses=[{"id": "wamid.OUT1", "status": "delivered", "timestamp": "1700000002",
                         "recipient_id": PHONE}])
    pay(app, stripe("evt_ada", "payment_intent.succeeded", 100, receipt_email=EMAIL,
                    customer="cus_ADA", shipping={"name": "Ada", "phone": "+44 7700 900123"}))
    meta(app, [text_message("wamid.ADA3", PHONE, "sent while the worker was away")],
         process=False)
    meta(app, [text_message("wamid.BOB1", OTHER, "someone else entirely")])
    created = app.test_client().post(
        "/v1/admin/destinations", headers={"Authorization": token(app, "ops", ["admin"])[
            "Authorization"]},
        json={"name": "crm", "url": "http://127.0.0.1:9/hook", "events": ["*"],
              "allowed_networks": ["127.0.0.0/8"], "allow_http": True})
    assert created.status_code == 201
    with app.app_context():  # a destination that echoed the message back in its answer
        event_id = db.session.scalar(select(Event.id).where(
            Event.type == "whatsapp.message.received").order_by(Event.id))
        destination = created.get_json()["id"]
        delivery = Delivery(destination_id=destination, event_id=event_id, status="succeeded")
        db.session.add(delivery)
        db.session.flush()
        db.session.add(DeliveryAttempt(delivery_id=delivery.id, destination_id=destination,
                                       latency=0.01, succeeded=True, status_code=200,
                                       response_excerpt=f"ok {TEXT}"))
        db.session.commit()


def traces(app) -> list[str]:
    """Where any spelling of the person is still found: the dump, every sealed value
    opened, every object in the store."""
    found = []
    backup = dump(app)
    found += [f"dump: {s}" for s in SPELLINGS if s.encode() in backup]
    with app.app_context():
        for table, column in sealed_columns(metadata):
            for value in db.session.scalars(select(column).where(column.is_not(None))):
                plain = value.decode("utf-8", "replace") if isinstance(value, bytes) \
                    else json.dumps(value) if not isinstance(value, str) else value
                found += [f"{table.name}.{column.name}: {s}" for s in SPELLINGS if s in plain]
        db.session.rollback()
    for path in Path(app.config["STORAGE_DIR"]).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"store {path.name}: {s}" for s in SPELLINGS if s.encode() in data]
    return found


def erase(app, admin, dry_run: bool, **subject):
    return app.test_client().post("/v1/admin/erasures", json={**subject, "dry_run": dry_run},
                                  headers={"Authorization": admin["Authorization"]})


def test_an_erasure_leaves_no_trace_of_the_person_and_keeps_the_business_record(
        erasing, providers):  # noqa: F811
    app, admin = erasing
    store_a_person(app, providers)
    before = traces(app)
    assert any(t.startswith("store") for t in before)  # the check can see the store
    assert any(t.startswith("webhook_events.body") for t in before)

    preview = erase(app, admin, True, phone="+44 (0)7700-900123".replace("(0)", ""))
    assert preview.status_code == 200, preview.get_json()
    report = preview.get_json()
    assert report["dry_run"] is True
    assert report["subject"] == {"kind": "phone",
                                 "index": sealing.blind_index("phone", PHONE)}
    # bodies: ADA1, ADA2, ADA3 (linked though never processed), the status, the
    # payment (its shipping phone); messages: ADA1, ADA2 and the outbound one the
    # status is about; their three events; the answer that echoed a message
    assert report["records"] == {"webhook_bodies": 5, "messages": 3, "media_documents": 1,
                                 "events": 3, "deliveries": 1}
    assert traces(app) == before  # a dry run erases nothing
    assert "7700" not in preview.get_data(as_text=True)

    by_phone = erase(app, admin, False, phone="+44 7700 900123")
    assert by_phone.status_code == 200
    assert by_phone.get_json()["records"] == report["records"]
    by_email = erase(app, admin, False, email="ada.marker@EXAMPLE.com").get_json()
    assert by_email["records"]["webhook_bodies"] == 0  # the Stripe body named the phone too
    assert traces(app) == []
    assert erase(app, admin, True, phone=PHONE).get_json()["records"] == {
        "webhook_bodies": 0, "messages": 0, "media_documents": 0, "events": 0,
        "deliveries": 0}

    with app.app_context():
        payment = db.session.scalar(select(Payment))
        assert (payment.reference, payment.amount, payment.currency, payment.status) == \
            ("pi_1", 1500, "eur", "succeeded")
        assert db.session.scalar(select(Document.id)) is None
        keys = set(db.session.scalars(select(WebhookEvent.event_key)))
        assert "evt_ada" in keys and len(keys) == 6  # dedup still knows every delivery
        bob = db.session.scalar(select(WhatsAppMessage).where(
            WhatsAppMessage.wamid == "wamid.BOB1"))
        assert (bob.phone, bob.text) == (OTHER, "someone else entirely")
        ada = db.session.scalar(select(WhatsAppMessage).where(
            WhatsAppMessage.wamid == "wamid.ADA1"))
        assert (ada.phone, ada.text, ada.status) == (None, None, "received")
        assert db.session.scalar(select(WhatsAppMedia.filename)) is None
        entries = list(db.session.scalars(select(AuditLog).where(
            AuditLog.subject_type == "subject").order_by(AuditLog.id)))
        assert [e.action for e in entries] == ["subject.erasure_preview", "subject.erase",
                                               "subject.erase", "subject.erasure_preview"]
        assert entries[1].subject_id == sealing.blind_index("phone", PHONE)
        assert not any(s in json.dumps(e.detail) for e in entries for s in SPELLINGS)
    # a redelivery of an erased event is still a duplicate, not a new effect
    body = json.dumps(stripe("evt_ada", "payment_intent.succeeded", 100)).encode()
    again = app.test_client().post("/webhooks/stripe", data=body,
                                   headers=signing.stripe_headers(body, STRIPE_SECRET))
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"


def test_a_person_who_writes_again_after_an_erasure_is_a_new_record(erasing, providers):  # noqa: F811,E501
    app, admin = erasing
    meta(app, [text_message("wamid.ADA1", PHONE, TEXT)])
    assert erase(app, admin, False, phone=PHONE).get_json()["records"]["messages"] == 1
    meta(app, [text_message("wamid.ADA9", PHONE, "hello again")])
    with app.app_context():
        rows = dict(db.session.execute(select(WhatsAppMessage.wamid, WhatsAppMessage.text)).all())
    assert rows == {"wamid.ADA1": None, "wamid.ADA9": "hello again"}


def test_holds_keep_what_they_cover_and_the_cli_says_which(erasing, providers):  # noqa: F811
    app, admin = erasing
    store_a_person(app, providers)
    with app.app_context():
        document_id = db.session.scalar(select(Document.id))
    client = app.test_client()
    placed = client.post("/v1/admin/holds", json={"document": document_id,
                                                  "reason": "fraud case 12"},
                         headers={"Authorization": admin["Authorization"]})
    assert placed.status_code == 201
    runner = app.test_cli_runner()
    preview = runner.invoke(args=["erasure", "--phone", PHONE, "--dry-run"])
    assert preview.exit_code == 0, preview.output
    assert "fraud case 12" in preview.output and PHONE not in preview.output
    assert "media_documents" in preview.output
    refused = runner.invoke(args=["erasure", "--phone", PHONE], input="n\n")
    assert refused.exit_code == 1
    with app.app_context():
        assert db.session.scalar(select(WhatsAppMessage.text).where(
            WhatsAppMessage.wamid == "wamid.ADA1")) == TEXT
    done = runner.invoke(args=["erasure", "--phone", PHONE], input="y\n")
    assert done.exit_code == 0, done.output
    with app.app_context():
        assert db.session.scalar(select(Document.id)) == document_id  # held: kept
        assert db.session.scalar(select(WhatsAppMessage.text).where(
            WhatsAppMessage.wamid == "wamid.ADA1")) is None

    # a hold on the person keeps everything of theirs, and says so
    held = client.post("/v1/admin/holds", json={"email": EMAIL, "reason": "subpoena 4"},
                       headers={"Authorization": admin["Authorization"]})
    assert held.status_code == 201
    pay(app, stripe("evt_ada2", "payment_intent.succeeded", 200, intent="pi_2",
                    receipt_email=EMAIL))
    report = erase(app, admin, False, email=EMAIL).get_json()
    assert report["records"]["webhook_bodies"] == 0 and report["kept"]["webhook_bodies"] == 1
    assert [h["reason"] for h in report["holds"]] == ["subpoena 4"]
    with app.app_context():
        assert db.session.scalar(select(WebhookEvent.body).where(
            WebhookEvent.event_key == "evt_ada2")) is not None


@pytest.mark.parametrize("body", [
    {}, {"phone": PHONE, "email": EMAIL}, {"phone": "no digits"}, {"email": "   "},
    {"phone": PHONE, "dry_run": "no"}, {"phone": PHONE, "extra": 1}, {"phone": 447700900123},
    {"customer": "x" * 321}, [PHONE],
])
def test_a_malformed_erasure_is_a_clear_400_and_erases_nothing(app, body):
    admin = token(app, "dpo", ["admin"])
    response = app.test_client().post("/v1/admin/erasures", json=body,
                                      headers={"Authorization": admin["Authorization"]})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] in ("invalid_request", "invalid_subject")
    with app.app_context():
        assert db.session.scalar(select(AuditLog.id).where(
            AuditLog.subject_type == "subject")) is None


def test_erasure_needs_the_admin_scope(app):
    reader = token(app, "shop", ["documents:read", "documents:write"])
    response = app.test_client().post("/v1/admin/erasures", json={"phone": PHONE},
                                      headers={"Authorization": reader["Authorization"]})
    assert response.status_code == 403


def test_the_console_finds_a_person_and_erases_only_after_confirmation(ops_app, operator):  # noqa: F811,E501
    apply(ops_app, whatsapp([text_message("wamid.ADA1", PHONE, TEXT)]), provider="meta",
          kind="whatsapp")
    page = operator.get("/ops/data")
    assert page.status_code == 200 and "DATA_KEYS" in page.get_data(as_text=True)
    csrf = csrf_of(operator, "/ops/data")
    refused = operator.post("/ops/data", data={"kind": "phone", "value": PHONE,
                                               "confirm": "erase"})  # no CSRF token
    assert refused.status_code == 400
    found = operator.post("/ops/data", data={"csrf_token": csrf, "kind": "phone",
                                             "value": "+44 7700 900123"})
    html = found.get_data(as_text=True)
    assert found.status_code == 200 and "Erase these records" in html
    assert "<td>messages</td><td>1</td>" in html
    with ops_app.app_context():
        assert db.session.scalar(select(WhatsAppMessage.text)) == TEXT  # not yet
    bad = operator.post("/ops/data", data={"csrf_token": csrf, "kind": "phone",
                                           "value": "<script>no digits</script>"})
    assert bad.status_code == 400 and "<script>" not in bad.get_data(as_text=True)
    erased = operator.post("/ops/data", data={"csrf_token": csrf, "kind": "phone",
                                              "value": "+44 7700 900123", "confirm": "erase"})
    assert erased.status_code == 200 and "Erased" in erased.get_data(as_text=True)
    with ops_app.app_context():
        assert db.session.scalar(select(WhatsAppMessage.text)) is None
        actions = list(db.session.scalars(select(AuditLog.action).where(
            AuditLog.subject_type == "subject").order_by(AuditLog.id)))
        assert actions == ["subject.erasure_preview", "subject.erase"]

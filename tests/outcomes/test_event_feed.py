"""The event log and what reads it: each change writes its event in its own
transaction (and only a real change does), the feed serves them by a cursor that
never skips or repeats, each reader sees what its scopes cover, and the read API
shows payments and messages."""
import json
import uuid

import pytest
from sqlalchemy import func, select

from documents.models import Document
from documents.scanning import give_up, mark_infected
from store import events
from store.events import Event
from tests.webhooks.test_processing import stripe, whatsapp
from webapp.auth import create_client
from webapp.extensions import db
from webhooks.models import WebhookEvent
from webhooks.processing import process


def token(app, name: str, scopes: list[str]) -> dict:
    with app.app_context():
        client, secret = create_client(db.session, name, scopes)
        db.session.commit()
    return {"Authorization": f"Bearer {secret}", "id": client.id}


def feed(client, headers, **params) -> dict:
    response = client.get("/v1/events", headers={"Authorization": headers["Authorization"]},
                          query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def types_of(page: dict) -> list[str]:
    return [event["type"] for event in page["events"]]


def apply(app, *payloads, provider="stripe", kind="payment"):
    """Store each payload as a delivery of its own and run its handler."""
    with app.app_context():
        for payload in payloads:
            event = WebhookEvent(source=provider, event_key=uuid.uuid4().hex, kind=kind,
                                 provider=provider, body=json.dumps(payload).encode())
            db.session.add(event)
            db.session.flush()
            process(db.session, event.id)
        db.session.commit()


def test_a_payment_change_is_one_event_and_a_duplicate_or_stale_one_none(app):
    reader = token(app, "shop", ["payments:read"])
    client = app.test_client()
    apply(app, stripe("e1", "payment_intent.created", 100))
    apply(app, stripe("e2", "payment_intent.succeeded", 200))
    apply(app, stripe("e2", "payment_intent.succeeded", 200))   # the same event again
    apply(app, stripe("e0", "payment_intent.created", 50))      # older than what we hold
    page = feed(client, reader)
    assert types_of(page) == ["payment.updated", "payment.updated"]
    first, second = (event["data"] for event in page["events"])
    assert (first["status"], first["previous_status"], first["version"]) == ("pending", None, 1)
    assert (second["status"], second["previous_status"], second["version"]) == \
        ("succeeded", "pending", 2)
    assert second["amount"] == 1500 and second["currency"] == "eur"
    assert second["reference"] == "pi_1" and second["provider"] == "stripe"
    event = page["events"][0]
    assert set(event) == {"id", "type", "timestamp", "data"} and event["id"].startswith("evt_")
    # Keep the cursor, ask again: nothing twice; then only what is new.
    again = feed(client, reader, after=page["next_cursor"])
    assert again["events"] == [] and again["next_cursor"] == page["next_cursor"]
    apply(app, stripe("e3", "charge.refunded", 300, intent="ch_1", payment_intent="pi_1"))
    newer = feed(client, reader, after=page["next_cursor"])
    assert [e["data"]["status"] for e in newer["events"]] == ["refunded"]


def test_a_rolled_back_change_leaves_no_event(app):
    from tests.webhooks.test_processing import run

    with app.app_context():
        run(db.session, stripe("e1", "payment_intent.created", 100))
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_whatsapp_messages_and_forward_statuses_are_events(app):
    reader = token(app, "crm", ["messages:read"])
    text = {"from": "15551230000", "id": "wamid.A", "timestamp": "1700000000",
            "type": "text", "text": {"body": "hello"}}
    sent = {"id": "wamid.OUT", "status": "sent", "timestamp": "1700000001",
            "recipient_id": "15551239999"}
    delivered = {**sent, "status": "delivered", "timestamp": "1700000002"}
    apply(app, whatsapp([text]), whatsapp([text]), whatsapp(statuses=[sent]),
          whatsapp(statuses=[delivered]), whatsapp(statuses=[sent]),
          provider="meta", kind="whatsapp")
    page = feed(app.test_client(), reader)
    assert types_of(page) == ["whatsapp.message.received", "whatsapp.message.status",
                              "whatsapp.message.status"]
    received = page["events"][0]["data"]
    assert (received["wamid"], received["from"], received["text"], received["provider"]) == \
        ("wamid.A", "15551230000", "hello", "meta")
    assert [e["data"]["status"] for e in page["events"][1:]] == ["sent", "delivered"]
    assert page["events"][2]["data"]["previous_status"] == "sent"


def document(app, owner_id: int, sha: str) -> int:
    with app.app_context():
        row = Document(owner_id=owner_id, sha256=sha * 64, size=3, mime_type="text/plain",
                       filename=f"{sha}.txt", status="pending_scan", scan_attempts=0)
        db.session.add(row)
        db.session.commit()
        return row.id


def test_document_verdicts_are_their_owners_events_and_admin_sees_all(app):
    alice = token(app, "alice", ["documents:read"])
    bob = token(app, "bob", ["documents:read"])
    admin = token(app, "oncall", ["admin"])
    shop = token(app, "shop", ["payments:read"])
    hers = document(app, alice["id"], "a")
    his = document(app, bob["id"], "b")
    with app.app_context():
        mark_infected(db.session, "a" * 64, "Eicar-Test-Signature")
        give_up(db.session, his)  # scan_error
        give_up(db.session, his)  # no change, no event
        db.session.commit()
    apply(app, stripe("e1", "payment_intent.created", 100))
    client = app.test_client()
    mine = feed(client, alice)["events"]
    assert [(e["type"], e["data"]["id"], e["data"]["status"]) for e in mine] == \
        [("document.scanned", hers, "infected")]
    assert mine[0]["data"]["signature"] == "Eicar-Test-Signature"
    assert [e["data"]["id"] for e in feed(client, bob)["events"]] == [his]
    assert types_of(feed(client, shop)) == ["payment.updated"]
    assert types_of(feed(client, admin)) == ["document.scanned", "document.scanned",
                                             "payment.updated"]
    assert types_of(feed(client, admin, types="payment.*")) == ["payment.updated"]
    assert types_of(feed(client, admin, types="document.scanned,import.finished")) == \
        ["document.scanned", "document.scanned"]
    nothing = token(app, "writer", ["documents:write"])
    assert feed(client, nothing)["events"] == []


@pytest.mark.parametrize("params, code", [
    ({"after": "12"}, "invalid_cursor"), ({"after": "a.b"}, "invalid_cursor"),
    ({"after": "1.2.3"}, "invalid_cursor"), ({"limit": "0"}, "invalid_parameter"),
    ({"types": "payment.*;drop"}, "invalid_parameter"), ({"types": "x" * 501},
                                                         "invalid_parameter")])
def test_a_bad_feed_request_is_a_clear_400(app, params, code):
    reader = token(app, "shop", ["payments:read"])
    response = app.test_client().get("/v1/events", headers={
        "Authorization": reader["Authorization"]}, query_string=params)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == code


def test_the_read_api_shows_payments_and_messages_to_their_scopes(app):
    shop = token(app, "shop", ["payments:read"])
    crm = token(app, "crm", ["messages:read"])
    apply(app, stripe("e1", "payment_intent.created", 100),
          stripe("e2", "payment_intent.succeeded", 200),
          stripe("e9", "payment_intent.created", 300, intent="pi_2"))
    image = {"from": "15551230000", "id": "wamid.B", "timestamp": "1700000001",
             "type": "image", "image": {"id": "media-77", "mime_type": "image/jpeg"}}
    apply(app, whatsapp([image]), provider="meta", kind="whatsapp")
    client = app.test_client()
    got = client.get("/v1/payments/stripe/pi_1", headers={"Authorization": shop["Authorization"]})
    assert got.status_code == 200
    assert (got.get_json()["status"], got.get_json()["version"]) == ("succeeded", 2)
    listed = client.get("/v1/payments", query_string={"status": "pending", "limit": 1},
                        headers={"Authorization": shop["Authorization"]}).get_json()
    assert [p["reference"] for p in listed["payments"]] == ["pi_2"]
    page = client.get("/v1/payments", query_string={"limit": 1},
                      headers={"Authorization": shop["Authorization"]}).get_json()
    rest = client.get("/v1/payments", query_string={"after": page["next_cursor"]},
                      headers={"Authorization": shop["Authorization"]}).get_json()
    assert [p["reference"] for p in page["payments"] + rest["payments"]] == ["pi_1", "pi_2"]
    assert client.get("/v1/payments/stripe/pi_404", headers={
        "Authorization": shop["Authorization"]}).status_code == 404
    assert client.get("/v1/payments", headers={
        "Authorization": crm["Authorization"]}).status_code == 403
    message = client.get("/v1/whatsapp/messages/wamid.B",
                         headers={"Authorization": crm["Authorization"]}).get_json()
    assert (message["from"], message["type"]) == ("15551230000", "image")
    listed = client.get("/v1/whatsapp/messages", query_string={"source": "meta"},
                        headers={"Authorization": crm["Authorization"]}).get_json()
    assert [m["wamid"] for m in listed["messages"]] == ["wamid.B"]
    assert client.get("/v1/whatsapp/messages/wamid.B", headers={
        "Authorization": shop["Authorization"]}).status_code == 403


def test_old_events_are_purged_by_retention(make_app):
    import datetime as dt

    from cron.jobs import registry
    from cron.runner import run_job
    from store.db import utcnow
    from tasks.app_state import redis_client

    app = make_app(RETENTION_EVENTS_DAYS=30)
    with app.app_context():
        events.record(db.session, events.PAYMENT_UPDATED, {"old": True})
        events.record(db.session, events.PAYMENT_UPDATED, {"old": False})
        db.session.flush()
        old = db.session.scalars(select(Event).order_by(Event.id)).first()
        old.created_at = utcnow() - dt.timedelta(days=31)
        db.session.commit()
        run = run_job(db.session, redis_client(), registry(app.config)["purge_retention"],
                      trigger="manual", config=app.config)
        assert run.outcome == "succeeded", run.error
        assert run.detail["events_deleted"] == 1
        assert [e.data for e in db.session.scalars(select(Event))] == [{"old": False}]


def test_a_verdict_says_how_the_document_came(app):
    from documents.models import ImportRow
    from whatsapp.models import WhatsAppMedia

    admin = token(app, "oncall", ["admin"])
    uploaded, imported, sent = (document(app, 1, c) for c in "xyz")
    with app.app_context():
        db.session.add(ImportRow(import_id=42, row_no=1, outcome="ok", document_id=imported))
        db.session.add(WhatsAppMedia(message_id=1, position=0, source="whatsapp",
                                     provider="meta", wamid="wamid.M", kind="document",
                                     media_ref="m1", status="fetched", document_id=sent,
                                     attempts=1))
        for document_id in (uploaded, imported, sent):
            give_up(db.session, document_id)  # scan_error: a verdict, so an event
        db.session.commit()
    origins = {e["data"]["id"]: e["data"]["origin"]
               for e in feed(app.test_client(), admin)["events"]}
    assert origins == {uploaded: {"kind": "upload"},
                       imported: {"kind": "import", "import_id": 42},
                       sent: {"kind": "whatsapp", "source": "whatsapp", "wamid": "wamid.M"}}

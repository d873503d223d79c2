"""The providers of the kit through the real app and database: each one's valid
delivery, tampered body and signature, replay, reply, trust level and effect.

Payment providers move the ledger; GitHub and Shopify (generic) become one
`webhook.received` event each in the feed, whatever is replayed.
"""
import json
import uuid

import pytest
from sqlalchemy import func, select

from payments.ledger import Payment
from tests.helpers.outbox import relay
from tests.outcomes.test_event_feed import feed, token, types_of
from tests.webhooks import signing
from webapp.extensions import db
from webhooks.models import WebhookEvent
from webhooks.operations import replay
from webhooks.processing import process

SECRETS = {"P_RAZORPAY": "rzp_secret", "P_SQUARE": "sq_key", "P_GITHUB": "gh_secret",
           "P_SHOPIFY": "shop_secret"}
SQUARE_URL = "https://hooks.example.com/webhooks/square"
SOURCES = {"sources": {
    "razorpay": {"scheme": "razorpay", "secrets_env": "P_RAZORPAY"},
    "square": {"scheme": "square", "secrets_env": "P_SQUARE", "public_url": SQUARE_URL},
    "github": {"scheme": "github", "secrets_env": "P_GITHUB"},
    "shopify": {"scheme": "shopify", "secrets_env": "P_SHOPIFY"},
}}


@pytest.fixture
def app(make_app, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return make_app(WEBHOOK_SOURCES=SOURCES)


def razorpay(reference: str, event: str = "payment.captured") -> tuple[bytes, dict]:
    body = json.dumps({"entity": "event", "event": event, "created_at": 1700000000,
                       "payload": {"payment": {"entity": {
                           "id": reference, "amount": 50000, "currency": "INR",
                           "status": "captured"}}}}).encode()
    return body, signing.razorpay_headers(body, SECRETS["P_RAZORPAY"], f"evt_{reference}_{event}")


def square(reference: str, status: str = "COMPLETED") -> tuple[bytes, dict]:
    body = json.dumps({"type": "payment.updated", "event_id": f"sq-{reference}-{status}",
                       "created_at": "2026-11-30T10:00:00Z", "data": {"object": {"payment": {
                           "id": reference, "status": status,
                           "amount_money": {"amount": 1500, "currency": "USD"}}}}}).encode()
    return body, signing.square_headers(body, SECRETS["P_SQUARE"], SQUARE_URL)


def github(delivery: str) -> tuple[bytes, dict]:
    body = json.dumps({"action": "opened", "number": 7}).encode()
    return body, signing.github_headers(body, SECRETS["P_GITHUB"], delivery, "pull_request")


def shopify(webhook_id: str) -> tuple[bytes, dict]:
    body = json.dumps({"id": 820982911946154508, "total_price": "199.00"}).encode()
    return body, signing.shopify_headers(body, SECRETS["P_SHOPIFY"], webhook_id)


DELIVERIES = {"razorpay": razorpay, "square": square, "github": github, "shopify": shopify}
SIGNATURE = {"razorpay": "X-Razorpay-Signature", "square": "x-square-hmacsha256-signature",
             "github": "X-Hub-Signature-256", "shopify": "X-Shopify-Hmac-Sha256"}


def stored(app) -> list[WebhookEvent]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def run_all(app) -> None:
    with app.app_context():
        for event in db.session.scalars(select(WebhookEvent.id)).all():
            process(db.session, event)
        db.session.commit()


@pytest.mark.parametrize("name", DELIVERIES)
def test_a_valid_delivery_is_stored_once_signed_and_a_replay_is_a_duplicate(app, name):
    client = app.test_client()
    body, headers = DELIVERIES[name](f"ref_{uuid.uuid4().hex[:10]}")
    first = client.post(f"/webhooks/{name}", data=body, headers=headers)
    assert first.status_code == 202, first.get_json()
    assert first.get_json()["status"] == "accepted"
    again = client.post(f"/webhooks/{name}", data=body, headers=headers)
    assert again.status_code == 200
    assert again.get_json() == {"id": first.get_json()["id"], "status": "duplicate"}
    [event] = stored(app)
    assert (event.trust, event.body) == ("signed", body)
    assert event.kind == ("generic" if name in ("github", "shopify") else "payment")
    assert relay(app) == 1


@pytest.mark.parametrize("name", DELIVERIES)
def test_a_tampered_body_or_signature_is_401_and_stores_nothing(app, name):
    client = app.test_client()
    body, headers = DELIVERIES[name]("ref_tampered")
    tampered_body = client.post(f"/webhooks/{name}", data=body.replace(b"}", b" }", 1),
                                headers=headers)
    forged = dict(headers)
    forged[SIGNATURE[name]] = forged[SIGNATURE[name]][:-4] + "AAAA"
    tampered_signature = client.post(f"/webhooks/{name}", data=body, headers=forged)
    for response in (tampered_body, tampered_signature):
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_signature"
    assert stored(app) == []


def test_square_refuses_a_delivery_signed_for_the_url_the_sender_chose(app):
    body, _ = square("sq_host")
    headers = signing.square_headers(body, SECRETS["P_SQUARE"], "http://localhost/webhooks/square")
    response = app.test_client().post("/webhooks/square", data=body, headers=headers)
    assert response.status_code == 401 and stored(app) == []


def test_razorpay_and_square_move_the_ledger(app):
    client = app.test_client()
    for body, headers, source in (
            (*razorpay("pay_1", "payment.authorized"), "razorpay"),
            (*razorpay("pay_1", "payment.captured"), "razorpay"),
            (*square("sq_1", "APPROVED"), "square"), (*square("sq_1", "FAILED"), "square")):
        assert client.post(f"/webhooks/{source}", data=body, headers=headers).status_code == 202
    run_all(app)
    with app.app_context():
        payments = {(p.provider, p.reference): (p.status, p.amount, p.currency)
                    for p in db.session.scalars(select(Payment))}
    assert payments == {("razorpay", "pay_1"): ("succeeded", 50000, "INR"),
                        ("square", "sq_1"): ("failed", 1500, "USD")}


def test_a_generic_delivery_is_one_webhook_received_event_whatever_is_replayed(app):
    client = app.test_client()
    body, headers = github("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    event_id = client.post("/webhooks/github", data=body, headers=headers).get_json()["id"]
    run_all(app)
    with app.app_context():
        replay(db.session, event_id, "ops@test")
        db.session.commit()
        process(db.session, event_id)  # and a redelivered task
        db.session.commit()
    reader = token(app, "integrations", ["webhooks:read"])
    page = feed(client, reader)
    assert types_of(page) == ["webhook.received"]
    data = page["events"][0]["data"]
    assert data == {"id": event_id, "source": "github",
                    "event_key": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                    "type": "pull_request", "trust": "signed",
                    "received_at": data["received_at"],
                    "payload": {"action": "opened", "number": 7}}
    # a payments reader does not see it
    assert types_of(feed(client, token(app, "ledger", ["payments:read"]))) == []


def test_the_trust_level_shows_in_the_admin_api(app):
    client = app.test_client()
    body, headers = shopify("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    client.post("/webhooks/shopify", data=body, headers=headers)
    admin = token(app, "ops", ["admin"])
    listed = client.get("/v1/admin/webhook-events",
                        headers={"Authorization": admin["Authorization"]}).get_json()
    [event] = listed["events"]
    assert (event["kind"], event["trust"], event["event_type"]) == (
        "generic", "signed", "orders/create")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 1

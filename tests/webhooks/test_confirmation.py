"""Flutterwave: a `token` delivery is confirmed with the provider's API (a local
server speaking its documented format) before it changes the ledger, run through the
real app, database and task as a worker runs it."""
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from payments.ledger import Payment
from store.events import Event
from tests.fakes.providers import FakeProviders, flutterwave_verify
from tests.helpers.workers import celery_of, process_as_worker
from tests.webhooks.test_hostile_payloads import HOSTILE, mutated, paths
from webapp.extensions import db
from webhooks.models import WebhookEvent

SECRET_HASH = "flw-secret-hash-for-tests"
SOURCES = {"sources": {"flutterwave": {"scheme": "flutterwave", "secrets_env": "F_HASH"}}}
EMAIL = "ade.bola@example.com"


@pytest.fixture
def api():
    fake = FakeProviders()
    yield fake
    fake.close()


@pytest.fixture
def app(make_app, api, monkeypatch):
    monkeypatch.setenv("F_HASH", SECRET_HASH)
    app = make_app(WEBHOOK_SOURCES=SOURCES, FLUTTERWAVE_API_BASE=api.url,
                   FLUTTERWAVE_SECRET_KEY="FLWSECK_TEST-key", RECONCILE_HTTP_RETRIES=0,
                   RECONCILE_READ_TIMEOUT=0.5, RECONCILE_BREAKER_FAILURES=50)
    celery_of(app).loader.import_default_modules()
    return app


def charge(transaction_id: int, status="successful", amount=100, currency="NGN") -> bytes:
    return json.dumps({"event": "charge.completed", "data": {
        "id": transaction_id, "tx_ref": f"tx-{transaction_id}", "amount": amount,
        "currency": currency, "status": status, "created_at": "2026-11-30T10:00:00.000Z",
        "customer": {"email": EMAIL, "phone_number": "+2348012345678"}}}).encode()


def post(app, body: bytes, secret_hash=SECRET_HASH):
    headers = {"Content-Type": "application/json"}
    if secret_hash is not None:
        headers["verif-hash"] = secret_hash
    return app.test_client().post("/webhooks/flutterwave", data=body, headers=headers)


def event_of(app, event_id: int) -> WebhookEvent:
    with app.app_context():
        return db.session.get(WebhookEvent, event_id)


def ledger(app) -> dict:
    with app.app_context():
        return {p.reference: (p.status, p.amount, p.currency)
                for p in db.session.scalars(select(Payment))}


def test_a_callback_claiming_success_that_the_api_calls_failed_leaves_the_ledger_failed(
        app, api):
    api.script("/v3/transactions/4001/verify", (200, flutterwave_verify(4001, "failed")))
    response = post(app, charge(4001, "successful"))
    assert response.status_code == 202
    event_id = response.get_json()["id"]
    assert event_of(app, event_id).trust == "token"
    assert process_as_worker(app, event_id) is False
    assert ledger(app) == {"4001": ("failed", 10000, "NGN")}
    event = event_of(app, event_id)
    assert (event.status, event.trust) == ("processed", "confirmed")
    with app.app_context():  # and what the team's systems learn says how it was known
        [announced] = db.session.scalars(select(Event).where(
            Event.type == "payment.updated")).all()
        assert (announced.data["status"], announced.data["trust"]) == ("failed", "confirmed")
    assert api.requests == [("/v3/transactions/4001/verify", "Bearer FLWSECK_TEST-key")]


def test_the_api_away_means_retry_then_success(app, api):
    api.script("/v3/transactions/4002/verify", (503, {"status": "error"}),
               (200, flutterwave_verify(4002, "successful", amount=250.5)))
    event_id = post(app, charge(4002, amount=250.5)).get_json()["id"]
    assert process_as_worker(app, event_id) is True  # a 503: retried, nothing applied
    event = event_of(app, event_id)
    assert (event.status, event.trust, event.last_error) == (
        "failed", "token", "ProviderUnavailable")
    assert ledger(app) == {}
    assert process_as_worker(app, event_id, retries=1) is False
    assert ledger(app) == {"4002": ("succeeded", 25050, "NGN")}
    assert event_of(app, event_id).trust == "confirmed"


def test_an_amount_mismatch_is_refused_dead_with_its_reason_and_no_personal_data(
        app, api, caplog):
    api.script("/v3/transactions/4003/verify",
               (200, flutterwave_verify(4003, "successful", amount=5000)))
    event_id = post(app, charge(4003, amount=100)).get_json()["id"]
    with caplog.at_level(logging.DEBUG):
        assert process_as_worker(app, event_id) is False  # dead at once: no retry can change it
    event = event_of(app, event_id)
    assert event.status == "dead" and event.trust == "token"
    assert event.last_error == ("Unconfirmed: amount mismatch: the delivery says 10000, "
                                "the provider's API 500000 (minor units)")
    assert ledger(app) == {}
    assert EMAIL not in caplog.text and "2348012345678" not in caplog.text


def test_a_currency_mismatch_and_an_unknown_transaction_are_dead(app, api):
    api.script("/v3/transactions/4004/verify",
               (200, flutterwave_verify(4004, "successful", currency="USD")))
    api.script("/v3/transactions/4005/verify", (404, {"status": "error"}))
    first = post(app, charge(4004)).get_json()["id"]
    second = post(app, charge(4005)).get_json()["id"]
    process_as_worker(app, first)
    process_as_worker(app, second)
    assert event_of(app, first).last_error.startswith("Unconfirmed: currency mismatch")
    assert event_of(app, second).last_error == (
        "Unconfirmed: the provider's API does not know this payment")
    assert ledger(app) == {}


@pytest.mark.parametrize("secret_hash, code", [
    (None, "missing_signature"), ("wrong-hash", "invalid_signature"),
    (SECRET_HASH + "x", "invalid_signature"), ("", "missing_signature"),
])
def test_a_missing_or_wrong_hash_is_401_and_stores_nothing(app, secret_hash, code):
    response = post(app, charge(4010), secret_hash)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == code
    with app.app_context():
        assert db.session.scalars(select(WebhookEvent)).all() == []


def test_a_replay_is_a_duplicate_and_the_api_is_asked_once(app, api):
    api.script("/v3/transactions/4020/verify", (200, flutterwave_verify(4020, "successful")))
    first = post(app, charge(4020))
    again = post(app, charge(4020))
    assert (first.status_code, again.status_code) == (202, 200)
    process_as_worker(app, first.get_json()["id"])
    assert api.hits("/v3/transactions/4020/verify") == 1
    assert ledger(app) == {"4020": ("succeeded", 10000, "NGN")}


def test_without_api_credentials_the_event_waits_rather_than_trusting_the_callback(
        make_app, monkeypatch):
    monkeypatch.setenv("F_HASH", SECRET_HASH)
    app = make_app(WEBHOOK_SOURCES=SOURCES)
    celery_of(app).loader.import_default_modules()
    event_id = post(app, charge(4030)).get_json()["id"]
    assert process_as_worker(app, event_id) is True
    assert ledger(app) == {}
    assert event_of(app, event_id).last_error == "ProviderUnavailable"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_charges_with_the_real_hash_never_500_never_half_stored_never_loop(
        app, api, data):
    api.default = (200, flutterwave_verify(1, "successful"))
    event = json.loads(charge(data.draw(st.integers(1, 10 ** 12), label="id")))
    path = data.draw(st.sampled_from(list(paths(event))), label="path")
    body = json.dumps(mutated(event, path, data.draw(HOSTILE, label="value"),
                              data.draw(st.booleans(), label="add"))).encode()
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(WebhookEvent))
    response = post(app, body)
    assert response.status_code in (200, 202, 400), response.get_data(as_text=True)
    if response.status_code != 202:
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == before
        return
    event_id = response.get_json()["id"]
    assert process_as_worker(app, event_id) is False  # never a retry loop
    assert event_of(app, event_id).status in ("processed", "dead")

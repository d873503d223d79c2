"""POST /webhooks/<source> and GET (Meta's handshake) through the real app and database."""
import copy
import io
import json
import uuid
from unittest.mock import ANY as mock_any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from store.outbox import OutboxMessage
from tests.helpers.outbox import queued, relay
from tests.services import free_port
from tests.webhooks import signing
from tests.webhooks.conftest import (
    META_SECRET,
    META_VERIFY_TOKEN,
    PAYSTACK_SECRET,
    SOURCES,
    STRIPE_OLD_SECRET,
    STRIPE_SECRET,
)
from webapp.extensions import db
from webhooks.models import WebhookEvent


def stripe_event(event_id=None, kind="payment_intent.succeeded", intent="pi_1") -> bytes:
    return json.dumps({"id": event_id or f"evt_{uuid.uuid4().hex}", "type": kind,
                       "created": 1700000000,
                       "data": {"object": {"id": intent, "amount": 2000,
                                           "currency": "usd"}}}).encode()


def post_stripe(client, body, secret=STRIPE_SECRET, **kwargs):
    return client.post("/webhooks/stripe", data=body,
                       headers=signing.stripe_headers(body, secret, **kwargs))


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_a_new_event_is_stored_with_its_raw_body_and_enqueued(app, client, redis_db):
    body = stripe_event("evt_first")
    response = post_stripe(client, body)
    assert response.status_code == 202
    assert response.get_json() == {"id": response.get_json()["id"], "status": "accepted"}
    with app.app_context():
        event = db.session.get(WebhookEvent, response.get_json()["id"])
        assert (event.source, event.event_key, event.status) == ("stripe", "evt_first",
                                                                 "received")
        assert event.body == body and event.event_type == "payment_intent.succeeded"
        assert "Stripe-Signature" not in event.headers  # signatures are not kept
    assert redis_db.llen("webhooks") == 0  # the web never publishes: a worker's relay does
    assert relay(app) == 1
    assert [m["kwargs"] for m in queued(redis_db, "webhooks")] == [
        {"event_id": response.get_json()["id"]}]


def test_a_duplicate_answers_200_with_the_same_id_and_enqueues_nothing(app, client, redis_db):
    body = stripe_event("evt_dup")
    first = post_stripe(client, body)
    again = post_stripe(client, body)  # re-signed with a new timestamp, as Stripe retries
    assert again.status_code == 200
    assert again.get_json() == {"id": first.get_json()["id"], "status": "duplicate"}
    assert count(app, WebhookEvent) == 1 and count(app, OutboxMessage) == 1
    assert relay(app) == 1 and redis_db.llen("webhooks") == 1


def test_meta_and_paystack_deduplicate_identical_bodies(app, client):
    body = b'{"event":"charge.success","data":{"reference":"r1","amount":100}}'
    headers = signing.paystack_headers(body, PAYSTACK_SECRET)
    assert client.post("/webhooks/paystack", data=body, headers=headers).status_code == 202
    assert client.post("/webhooks/paystack", data=body, headers=headers).status_code == 200
    other = body.replace(b"r1", b"r2")
    assert client.post("/webhooks/paystack", data=other,
                       headers=signing.paystack_headers(other, PAYSTACK_SECRET)
                       ).status_code == 202


def test_the_previous_secret_still_verifies_during_rotation(client):
    assert post_stripe(client, stripe_event(), secret=STRIPE_OLD_SECRET).status_code == 202
    assert post_stripe(client, stripe_event(), secret="whsec_someone_else").status_code == 401


@pytest.mark.parametrize("mangle, code", [
    (lambda h, b: ({}, b), "missing_signature"),
    (lambda h, b: (h, b + b" "), "invalid_signature"),
    (lambda h, b: ({"Stripe-Signature": "t=1,v1=00"}, b), "invalid_signature"),
])
def test_bad_signatures_get_401_with_a_distinct_code_and_store_nothing(
        app, client, mangle, code):
    body = stripe_event()
    headers, sent = mangle(signing.stripe_headers(body, STRIPE_SECRET), body)
    response = client.post("/webhooks/stripe", data=sent, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == code
    assert count(app, WebhookEvent) == 0


def test_a_stale_timestamp_gets_its_own_code(client):
    import time
    response = post_stripe(client, stripe_event(), timestamp=int(time.time()) - 600)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "timestamp_out_of_tolerance"


def test_a_source_without_a_configured_secret_refuses_everything(client):
    body = b'{"event":"charge.success","data":{"reference":"r"}}'
    response = client.post("/webhooks/unconfigured", data=body,
                           headers=signing.paystack_headers(body, ""))
    assert response.status_code == 401


def test_unknown_source_is_404(client):
    response = client.post("/webhooks/nobody", data=b"{}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "unknown_source"


def test_a_body_over_the_source_cap_is_413_and_not_stored(app, client):
    big = json.dumps({"id": "evt_big", "pad": "x" * 70000}).encode()
    response = post_stripe(client, big)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert count(app, WebhookEvent) == 0


def test_a_signed_stripe_body_that_is_not_an_event_is_400(app, client):
    for body in (b"not json", b"[1,2]", b'{"type":"x"}', b'{"id": 7}'):
        response = post_stripe(client, body)
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_payload"
    assert count(app, WebhookEvent) == 0


def test_database_down_is_503_with_retry_after_and_never_a_2xx(app_config, webhook_env):
    from webapp import create_app

    app = create_app({**app_config, "WEBHOOK_SOURCES": SOURCES,
                      "DATABASE_URL": f"postgresql://x@127.0.0.1:{free_port()}/none"})
    response = post_stripe(app.test_client(), stripe_event())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "database_unavailable"


class LockNotAvailable(Exception):
    sqlstate = "55P03"  # what psycopg raises past PostgreSQL's lock_timeout


@pytest.mark.parametrize("driver_error", [
    __import__("sqlite3").OperationalError("database is locked"),  # past busy_timeout
    LockNotAvailable("canceling statement due to lock timeout"),
])
def test_a_lock_wait_that_ran_out_is_database_busy_not_down(app, client, monkeypatch,
                                                            driver_error, caplog):
    from sqlalchemy.exc import OperationalError

    import webapp.webhook_views

    def locked(*args, **kwargs):
        raise OperationalError("INSERT ...", None, driver_error)
    monkeypatch.setattr(webapp.webhook_views, "store_batch", locked)
    response = post_stripe(client, stripe_event())
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "database_busy"
    assert "database busy" in caplog.text and "database unavailable" not in caplog.text
    assert count(app, WebhookEvent) == 0


def test_meta_subscription_handshake(client):
    ok = client.get("/webhooks/whatsapp", query_string={
        "hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN,
        "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.mimetype == "text/plain"
    assert ok.get_data(as_text=True) == "1158201444"
    for query in ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
                  {"hub.mode": "unsubscribe", "hub.verify_token": META_VERIFY_TOKEN,
                   "hub.challenge": "1"},
                  {"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN}):
        refused = client.get("/webhooks/whatsapp", query_string=query)
        assert refused.status_code == 403
        assert refused.get_json()["error"]["code"] == "verification_failed"
    assert client.get("/webhooks/stripe", query_string={
        "hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    ).status_code == 403


def test_a_signed_whatsapp_delivery_is_accepted(client):
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    response = client.post("/webhooks/whatsapp", data=body,
                           headers=signing.meta_headers(body, META_SECRET))
    assert response.status_code == 202


def limited_sources(rate_limit: str) -> dict:
    sources = copy.deepcopy(SOURCES)
    sources["sources"]["stripe"]["rate_limit"] = rate_limit
    return sources


def test_over_the_source_limit_is_429_with_retry_after(make_webhook_app):
    client = make_webhook_app(limited_sources("3/minute")).test_client()
    assert [post_stripe(client, stripe_event()).status_code for _ in range(3)] == [202] * 3
    limited = post_stripe(client, stripe_event())
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert limited.headers["Retry-After"] == "60"
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert limited.headers["X-RateLimit-Remaining"] == "0"


def test_forged_deliveries_spend_their_own_per_ip_budget_not_the_providers(
        make_webhook_app):
    client = make_webhook_app(limited_sources("3/minute"),
                              WEBHOOK_INVALID_SIGNATURE_LIMIT="5/minute").test_client()
    forged = [post_stripe(client, stripe_event(), secret="whsec_forger").status_code
              for _ in range(5)]
    assert forged == [401] * 5
    blocked = post_stripe(client, stripe_event(), secret="whsec_forger")
    assert blocked.status_code == 429
    other_ip = client.post("/webhooks/stripe", data=(body := stripe_event()),
                           headers=signing.stripe_headers(body, STRIPE_SECRET),
                           environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert other_ip.status_code == 202  # the provider's own quota is untouched


def fallback_count() -> float:
    return REGISTRY.get_sample_value("sluice_rate_limit_fallback_total") or 0.0


def test_redis_down_fails_open_to_an_in_memory_limit_and_counts_it(make_webhook_app, capfd):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = make_webhook_app(limited_sources("4/minute"), REDIS_URL=dead,
                           RATELIMIT_STORAGE_URI=dead, CELERY_BROKER_URL=dead)
    client = app.test_client()
    before = fallback_count()
    statuses = [post_stripe(client, stripe_event()).status_code for _ in range(5)]
    assert statuses == [202, 202, 202, 202, 429]  # still limited, from memory
    assert fallback_count() - before >= 5
    assert count(app, WebhookEvent) == 4
    with app.app_context():  # the broker was down too: all four wait for the relay
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.published_at.is_(None))) == 4
    warnings = [line for line in capfd.readouterr().err.splitlines()
                if "falling back to in-memory storage" in line]
    assert len(warnings) == 1  # logged once, not per request


def chunked_post(app, body: bytes, signed: bytes):
    """POST `body` with no Content-Length (as gunicorn passes a chunked request), carrying
    a Stripe signature over `signed`."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(path="/webhooks/stripe", method="POST",
                             headers={**signing.stripe_headers(signed, STRIPE_SECRET),
                                      "Transfer-Encoding": "chunked"}).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    return int(status.split()[0]), json.loads(b"".join(app_iter))


def event_of_size(size: int) -> bytes:
    bare = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "payment_intent.succeeded",
                       "data": {"object": {"id": "pi_1"}}, "pad": ""}).encode()
    return bare.replace(b'"pad": ""', b'"pad": "' + b"x" * (size - len(bare)) + b'"')


def test_a_chunked_body_past_the_cap_is_413_however_it_is_signed(app):
    from tasks.app_state import SOURCES_KEY

    cap = app.extensions[SOURCES_KEY]["stripe"].max_body
    exact = event_of_size(cap)
    assert len(exact) == cap
    # Signed over the first `cap` bytes: werkzeug cut the body there, and it verified.
    assert chunked_post(app, exact + b"  trailing", exact) == (
        413, {"error": {"code": "payload_too_large", "message": mock_any,
                        "request_id": mock_any}})
    # Signed over the whole: it was cut, failed verification, and spent a forgery budget.
    status, answer = chunked_post(app, exact + b"x" * 70000, exact + b"x" * 70000)
    assert (status, answer["error"]["code"]) == (413, "payload_too_large")
    assert count(app, WebhookEvent) == 0
    status, answer = chunked_post(app, exact, exact)  # the cap itself is allowed
    assert status == 202, answer

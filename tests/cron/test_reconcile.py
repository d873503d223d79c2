"""reconcile_payments against a local server speaking the providers' formats."""
import datetime as dt

import pytest
from sqlalchemy import select, update

from cron.jobs import registry
from cron.runner import run_job
from payments.ledger import Payment, PaymentUpdate, apply_update
from store.db import utcnow
from tests.fakes.providers import FakeProviders, paystack_verify, stripe_intent
from webapp.extensions import db


@pytest.fixture
def providers():
    fake = FakeProviders()
    yield fake
    fake.close()


@pytest.fixture
def app(make_app, providers):
    return make_app(STRIPE_API_BASE=providers.url, PAYSTACK_API_BASE=providers.url,
                    STRIPE_API_KEY="sk_test_reconcile", PAYSTACK_SECRET_KEY="sk_test_paystack",
                    RECONCILE_HTTP_BACKOFF=0.01, RECONCILE_READ_TIMEOUT=0.5,
                    RECONCILE_HTTP_RETRIES=2, RECONCILE_BREAKER_FAILURES=3)


def pending(session, provider, *references, age=3600):
    for reference in references:
        apply_update(session, PaymentUpdate(provider, reference, "pending",
                                            utcnow() - dt.timedelta(seconds=age), "e"))
    session.execute(update(Payment).where(Payment.reference.in_(references))
                    .values(updated_at=utcnow() - dt.timedelta(seconds=age)))
    session.commit()


def status_of(session, reference) -> str:
    session.expire_all()
    return session.scalar(select(Payment.status).where(Payment.reference == reference))


def reconcile(app):
    job = registry(app.config)["reconcile_payments"]
    return run_job(db.session, app.extensions["sluice.redis"], job, trigger="manual",
                   config=app.config)


def test_success_and_decline_are_applied_forward_only(app, providers):
    providers.script("/v1/payment_intents/pi_ok", (200, stripe_intent("pi_ok", "succeeded")))
    providers.script("/transaction/verify/ps_no", (200, paystack_verify("ps_no", "failed")))
    with app.app_context():
        pending(db.session, "stripe", "pi_ok")
        pending(db.session, "paystack", "ps_no")
        pending(db.session, "stripe", "pi_recent", age=10)  # not due yet
        run = reconcile(app)
        assert run.outcome == "succeeded"
        assert run.detail == {"checked": 2, "updated": 2, "unknown": 0, "errors": 0,
                              "circuit_open": 0}
        assert status_of(db.session, "pi_ok") == "succeeded"
        assert status_of(db.session, "ps_no") == "failed"
        assert status_of(db.session, "pi_recent") == "pending"
    assert ("/v1/payment_intents/pi_ok", "Bearer sk_test_reconcile") in providers.requests
    assert providers.hits("/v1/payment_intents/pi_recent") == 0


def test_5xx_and_429_are_retried_with_backoff_then_applied(app, providers):
    providers.script("/v1/payment_intents/pi_flaky",
                     (503, {"error": {}}),
                     (429, {"error": {}}, {"headers": {"Retry-After": "0"}}),
                     (200, stripe_intent("pi_flaky", "succeeded")))
    with app.app_context():
        pending(db.session, "stripe", "pi_flaky")
        assert reconcile(app).detail["updated"] == 1
        assert status_of(db.session, "pi_flaky") == "succeeded"
    assert providers.hits("/v1/payment_intents/pi_flaky") == 3


def test_timeouts_and_unknown_payments_leave_the_payment_pending(app, providers):
    slow = (200, stripe_intent("pi_slow", "succeeded"), {"delay": 1.0})
    providers.script("/v1/payment_intents/pi_slow", slow, slow, slow)
    providers.script("/v1/payment_intents/pi_gone",
                     (404, {"error": {"code": "resource_missing"}}))
    with app.app_context():
        pending(db.session, "stripe", "pi_slow", "pi_gone")
        detail = reconcile(app).detail
        assert (detail["errors"], detail["unknown"], detail["updated"]) == (1, 1, 0)
        assert status_of(db.session, "pi_slow") == "pending"


def test_the_circuit_opens_after_repeated_failures_and_stops_calling(app, providers):
    references = [f"pi_down_{i}" for i in range(5)]  # the server answers 500 by default
    with app.app_context():
        pending(db.session, "stripe", *references)
        first = reconcile(app).detail
        assert first["errors"] == 2 and first["circuit_open"] == 3  # tripped on the 3rd
        calls = len(providers.requests)
        assert calls == 3 * 3  # three payments tried, each 1 try + 2 retries
        second = reconcile(app).detail
        assert second["circuit_open"] == 5 and second["checked"] == 1
        assert len(providers.requests) == calls, "an open circuit must not call out"
        assert all(status_of(db.session, r) == "pending" for r in references)


@pytest.mark.parametrize("provider, settings, path, answer, authorization", [
    ("razorpay", {"RAZORPAY_KEY_ID": "rzp_key", "RAZORPAY_KEY_SECRET": "rzp_secret"},
     "/v1/payments/pay_r1", {"id": "pay_r1", "status": "captured", "amount": 100},
     "Basic cnpwX2tleTpyenBfc2VjcmV0"),
    ("square", {"SQUARE_ACCESS_TOKEN": "sq_token"}, "/v2/payments/pay_r1",
     {"payment": {"id": "pay_r1", "status": "COMPLETED"}}, "Bearer sq_token"),
    ("flutterwave", {"FLUTTERWAVE_SECRET_KEY": "FLWSECK-x"}, "/v3/transactions/pay_r1/verify",
     {"status": "success", "data": {"id": 1, "status": "successful", "amount": 1,
                                    "currency": "NGN"}}, "Bearer FLWSECK-x"),
])
def test_the_new_providers_reconcile_through_their_status_apis(
        make_app, providers, provider, settings, path, answer, authorization):
    base = {f"{provider.upper()}_API_BASE": providers.url}
    app = make_app(**base, **settings, RECONCILE_HTTP_RETRIES=0)
    providers.script(path, (200, answer))
    with app.app_context():
        pending(db.session, provider, "pay_r1")
        assert reconcile(app).detail["updated"] == 1
        assert status_of(db.session, "pay_r1") == "succeeded"
    assert providers.requests == [(path, authorization)]


def test_paypal_reconciles_with_a_client_credentials_token_it_keeps(make_app, providers):
    app = make_app(PAYPAL_API_BASE=providers.url, PAYPAL_CLIENT_ID="client",
                   PAYPAL_CLIENT_SECRET="secret", RECONCILE_HTTP_RETRIES=0)
    providers.script("/v1/oauth2/token", (200, {"access_token": "A21AA-token",
                                                "token_type": "Bearer", "expires_in": 32400}))
    providers.script("/v2/payments/captures/CAP-R1", (200, {"id": "CAP-R1",
                                                            "status": "COMPLETED"}))
    providers.script("/v2/payments/captures/CAP-R2", (200, {"id": "CAP-R2",
                                                            "status": "DECLINED"}))
    with app.app_context():
        pending(db.session, "paypal", "CAP-R1", "CAP-R2")
        assert reconcile(app).detail["updated"] == 2
        assert status_of(db.session, "CAP-R1") == "succeeded"
        assert status_of(db.session, "CAP-R2") == "failed"
    assert providers.requests == [
        ("/v1/oauth2/token", "Basic Y2xpZW50OnNlY3JldA=="),  # client:secret, once
        ("/v2/payments/captures/CAP-R1", "Bearer A21AA-token"),
        ("/v2/payments/captures/CAP-R2", "Bearer A21AA-token")]
    assert providers.bodies == [("/v1/oauth2/token", "grant_type=client_credentials")]

"""M-Pesa (Daraja) through the real app, database and task: a path token instead of a
signature, an address allowlist, Daraja's reply, and every STK result confirmed with
the STK Push Query API (a local server speaking Daraja's documented format)."""
import json
import statistics
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from payments.ledger import Payment
from tests.fakes.providers import FakeProviders, daraja_token, stk_query
from tests.helpers.workers import celery_of, process_as_worker
from tests.webhooks.test_hostile_payloads import HOSTILE, mutated, paths
from webapp.extensions import db
from webhooks.models import WebhookEvent

TOKEN = "mp_7Qz2bW9xKc4LrT8vYh3N"
SOURCES = {"sources": {"mpesa": {"scheme": "mpesa", "path_token_env": "M_TOKEN"},
                       "fenced": {"scheme": "mpesa", "path_token_env": "M_TOKEN",
                                  "allowed_ips": ["196.201.214.0/24"]}}}
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
TOKEN_PATH = "/oauth/v1/generate?grant_type=client_credentials"
QUERY_PATH = "/mpesa/stkpushquery/v1/query"


@pytest.fixture
def daraja():
    fake = FakeProviders()
    yield fake
    fake.close()


@pytest.fixture
def app(make_app, daraja, monkeypatch):
    monkeypatch.setenv("M_TOKEN", TOKEN)
    app = make_app(WEBHOOK_SOURCES=SOURCES, MPESA_API_BASE=daraja.url,
                   MPESA_CONSUMER_KEY="ck_test", MPESA_CONSUMER_SECRET="cs_test",
                   MPESA_SHORTCODE="174379", MPESA_PASSKEY="passkey_test",
                   RECONCILE_HTTP_RETRIES=0, RECONCILE_READ_TIMEOUT=0.5,
                   RECONCILE_BREAKER_FAILURES=50)
    celery_of(app).loader.import_default_modules()
    return app


def stk(checkout_id: str, result_code=0, amount=1.0) -> bytes:
    callback = {"MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout_id,
                "ResultCode": result_code, "ResultDesc": "processed"}
    if result_code == 0:
        callback["CallbackMetadata"] = {"Item": [
            {"Name": "Amount", "Value": amount}, {"Name": "MpesaReceiptNumber",
                                                  "Value": "NLJ7RT61SV"},
            {"Name": "TransactionDate", "Value": 20191219102115},
            {"Name": "PhoneNumber", "Value": 254708374149}]}
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


def c2b(trans_id: str) -> bytes:
    return json.dumps({"TransactionType": "Pay Bill", "TransID": trans_id,
                       "TransTime": "20191122063845", "TransAmount": "10",
                       "BusinessShortCode": "600638", "BillRefNumber": "A123",
                       "MSISDN": "2547*****149", "FirstName": "John"}).encode()


def post(app, body: bytes, path=f"/webhooks/mpesa/{TOKEN}", **environ):
    return app.test_client().post(path, data=body, environ_base=environ,
                                  headers={"Content-Type": "application/json"})


def stored(app) -> list[WebhookEvent]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def ledger(app) -> dict:
    with app.app_context():
        return {p.reference: (p.status, p.amount, p.currency)
                for p in db.session.scalars(select(Payment))}


def test_a_callback_with_the_token_is_stored_and_answered_as_daraja_wants(app):
    response = post(app, stk("ws_CO_1"))
    assert (response.status_code, response.get_json()) == (200, ACCEPTED)
    again = post(app, stk("ws_CO_1"))  # Daraja retries: a duplicate, answered the same
    assert (again.status_code, again.get_json()) == (200, ACCEPTED)
    [event] = stored(app)
    assert (event.event_key, event.event_type, event.trust) == (
        "ws_CO_1", "stk_callback", "token")


def test_the_ledger_takes_the_query_apis_answer_and_the_token_is_cached(app, daraja):
    daraja.script(TOKEN_PATH, (200, daraja_token()))
    daraja.script(QUERY_PATH, (200, stk_query("ws_CO_2", "0")),
                  (200, stk_query("ws_CO_3", "1032")))
    post(app, stk("ws_CO_2", amount=150.5))
    post(app, stk("ws_CO_3", result_code=0))  # the callback claims success ...
    for event in stored(app):
        assert process_as_worker(app, event.id) is False
    # ... the API says cancelled by the customer: failed; the amounts the callbacks
    # claimed are not the API's word, and the query names none
    assert ledger(app) == {"ws_CO_2": ("succeeded", None, "KES"),
                           "ws_CO_3": ("failed", None, "KES")}
    assert {e.trust for e in stored(app)} == {"confirmed"}
    assert daraja.hits(TOKEN_PATH) == 1  # one OAuth token for both queries
    auth = [auth for path, auth in daraja.requests if path == TOKEN_PATH]
    assert auth == ["Basic Y2tfdGVzdDpjc190ZXN0"]  # ck_test:cs_test
    queries = [(path, auth) for path, auth in daraja.requests if path == QUERY_PATH]
    assert queries == [(QUERY_PATH, "Bearer daraja-token")] * 2
    body = daraja.bodies[0][1]
    assert (body["BusinessShortCode"], body["CheckoutRequestID"]) == ("174379", "ws_CO_2")
    assert len(body["Timestamp"]) == 14 and body["Password"]


def test_the_api_away_means_retry_then_success(app, daraja):
    daraja.script(TOKEN_PATH, (503, {}), (200, daraja_token()))
    daraja.script(QUERY_PATH, (200, stk_query("ws_CO_4", "0")))
    post(app, stk("ws_CO_4"))
    [event] = stored(app)
    assert process_as_worker(app, event.id) is True
    assert ledger(app) == {} and stored(app)[0].trust == "token"
    assert process_as_worker(app, event.id, retries=1) is False
    assert ledger(app) == {"ws_CO_4": ("succeeded", None, "KES")}


def test_a_c2b_confirmation_is_stored_and_moves_no_payment(app, daraja):
    response = post(app, c2b("RKTQDM7W6S"))
    assert (response.status_code, response.get_json()) == (200, ACCEPTED)
    [event] = stored(app)
    assert (event.event_key, event.event_type) == ("RKTQDM7W6S", "c2b_confirmation")
    assert process_as_worker(app, event.id) is False
    assert stored(app)[0].status == "processed" and ledger(app) == {}
    assert daraja.requests == []


@pytest.mark.parametrize("path", [
    "/webhooks/mpesa/wrong-token", "/webhooks/mpesa", f"/webhooks/mpesa/{TOKEN}x",
    f"/webhooks/nosuch/{TOKEN}", "/webhooks/nosuch",
])
def test_a_missing_or_wrong_token_is_an_unknown_source(app, path):
    response = post(app, stk("ws_CO_5"), path=path)
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert (error["code"], error["message"]) == ("unknown_source",
                                                 "No webhook source has that name.")
    assert set(error) == {"code", "message", "request_id"}
    assert stored(app) == []


def test_a_wrong_token_takes_as_long_as_an_unknown_source(app):
    client = app.test_client()
    body = stk("ws_CO_6")
    timings = {"wrong": [], "unknown": []}
    for _ in range(150):  # interleaved, so load on the machine falls on both alike
        for kind, path in (("wrong", "/webhooks/mpesa/guess"), ("unknown", "/webhooks/nope/x")):
            started = time.perf_counter()
            client.post(path, data=body)
            timings[kind].append(time.perf_counter() - started)
    wrong, unknown = (statistics.median(timings[k]) for k in ("wrong", "unknown"))
    assert 0.67 < wrong / unknown < 1.5, (wrong, unknown)


def test_an_address_outside_allowed_ips_is_refused(app):
    refused = post(app, stk("ws_CO_7"), path=f"/webhooks/fenced/{TOKEN}",
                   REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "address_not_allowed"
    allowed = post(app, stk("ws_CO_7"), path=f"/webhooks/fenced/{TOKEN}",
                   REMOTE_ADDR="196.201.214.200")
    assert allowed.status_code == 200
    assert len(stored(app)) == 1


def test_allowed_ips_honours_the_trusted_proxy_count(make_app, monkeypatch):
    monkeypatch.setenv("M_TOKEN", TOKEN)
    app = make_app(WEBHOOK_SOURCES=SOURCES, TRUSTED_PROXY_COUNT=1)
    spoofed = app.test_client().post(
        f"/webhooks/fenced/{TOKEN}", data=stk("ws_CO_8"), environ_base={
            "REMOTE_ADDR": "10.0.0.5"},
        headers={"X-Forwarded-For": "196.201.214.1, 203.0.113.9"})
    assert spoofed.status_code == 403  # the proxy saw 203.0.113.9; the rest is the sender's
    through = app.test_client().post(
        f"/webhooks/fenced/{TOKEN}", data=stk("ws_CO_8"), environ_base={
            "REMOTE_ADDR": "10.0.0.5"}, headers={"X-Forwarded-For": "196.201.214.1"})
    assert through.status_code == 200


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_callbacks_never_500_never_half_stored_never_loop(app, daraja, data):
    daraja.default = (200, stk_query("any", "0"))
    daraja.script(TOKEN_PATH, *[(200, daraja_token())] * 100)
    event = json.loads(stk(f"ws_CO_h{data.draw(st.integers(0, 10 ** 9))}"))
    path = data.draw(st.sampled_from(list(paths(event))), label="path")
    body = json.dumps(mutated(event, path, data.draw(HOSTILE, label="value"),
                              data.draw(st.booleans(), label="add"))).encode()
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(WebhookEvent))
    response = post(app, body)
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    with app.app_context():
        after = db.session.scalar(select(func.count()).select_from(WebhookEvent))
    if response.status_code == 400:
        assert after == before
        return
    event_id = max(e.id for e in stored(app))
    assert process_as_worker(app, event_id) is False  # never a retry loop: processed or dead
    with app.app_context():
        assert db.session.get(WebhookEvent, event_id).status in ("processed", "dead")


def test_callback_metadata_that_is_not_a_list_is_read_as_none(app, daraja):
    # found by the hostile test: an Item that was a number made the handler raise
    daraja.script(TOKEN_PATH, (200, daraja_token()))
    daraja.script(QUERY_PATH, (200, stk_query("ws_CO_9", "0")))
    body = json.loads(stk("ws_CO_9"))
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = 2 ** 63 - 1
    post(app, json.dumps(body).encode())
    [event] = stored(app)
    assert process_as_worker(app, event.id) is False
    assert ledger(app) == {"ws_CO_9": ("succeeded", None, "KES")}

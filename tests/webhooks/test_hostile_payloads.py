"""Validly signed, hostile payloads: a signature proves the sender, not the data.

For every scheme, Hypothesis takes a well-formed event, replaces one node anywhere in
it (or adds one) with something hostile, signs it with the source's real secret and
posts it through the app. Whatever comes in: no 5xx; a 4xx stores nothing; a 2xx
stores the event and its outbox row once; and the task, called as a worker calls it,
ends `processed` or deliberately `dead`, never in a retry loop.
"""
import base64
import copy
import hashlib
import hmac
import itertools
import json
import time
import uuid

import pytest
from celery.exceptions import Retry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from store.outbox import OutboxMessage
from store.task_names import PROCESS_EVENT
from tests.helpers.workers import celery_of, worker_request
from tests.webhooks import signing
from webapp.extensions import db
from webhooks.models import WebhookEvent

SECRETS = {"H_STRIPE": "whsec_hostile_stripe", "H_PAYSTACK": "sk_hostile_paystack",
           "H_WHATSAPP": "hostile_meta_secret", "H_STANDARD": "whsec_aG9zdGlsZS1zdGFuZGFyZA==",
           "H_SHOP": "hostile_shop_secret", "H_TWILIO": "hostile_twilio_auth_token",
           "H_RAZORPAY": "hostile_razorpay", "H_SQUARE": "hostile_square_key",
           "H_GITHUB": "hostile_github", "H_SHOPIFY": "hostile_shopify"}
MAX_BODY = 16 * 1024
SOURCES = {"sources": {
    "stripe": {"scheme": "stripe", "secrets_env": "H_STRIPE", "max_body": MAX_BODY},
    "paystack": {"scheme": "paystack", "secrets_env": "H_PAYSTACK", "max_body": MAX_BODY},
    "whatsapp": {"scheme": "meta", "secrets_env": "H_WHATSAPP", "max_body": MAX_BODY},
    "standard": {"scheme": "standard", "provider": "stripe", "secrets_env": "H_STANDARD",
                 "max_body": MAX_BODY},
    "shop": {"scheme": "hmac-sha256", "provider": "paystack", "secrets_env": "H_SHOP",
             "signature_prefix": "sha256=", "event_key_header": "X-Event-Id",
             "max_body": MAX_BODY},
    "twilio": {"scheme": "twilio", "secrets_env": "H_TWILIO", "max_body": MAX_BODY,
               "public_url": "http://localhost/webhooks/twilio"},
    "razorpay": {"scheme": "razorpay", "secrets_env": "H_RAZORPAY", "max_body": MAX_BODY},
    "square": {"scheme": "square", "secrets_env": "H_SQUARE", "max_body": MAX_BODY,
               "public_url": "http://localhost/webhooks/square"},
    "github": {"scheme": "github", "secrets_env": "H_GITHUB", "max_body": MAX_BODY},
    "shopify": {"scheme": "shopify", "secrets_env": "H_SHOPIFY", "max_body": MAX_BODY},
}}
# What dead may say: the data's fault, decided once.
FINAL_ERRORS = ("PayloadError", "DataError", "StatementError")


def stripe_event() -> dict:
    return {"id": f"evt_{uuid.uuid4().hex}", "type": "payment_intent.succeeded",
            "created": 1700000000, "data": {"object": {
                "id": f"pi_{uuid.uuid4().hex[:8]}", "amount": 1999, "currency": "usd",
                "receipt_email": "jane.doe@example.com"}}}


def paystack_event() -> dict:
    return {"event": "charge.success", "data": {
        "id": 302961, "reference": f"ref_{uuid.uuid4().hex[:8]}", "amount": 50000,
        "currency": "NGN", "paid_at": "2026-11-30T10:00:00Z",
        "customer": {"email": "ade@example.com", "first_name": "Ade"}}}


def meta_event() -> dict:
    wamid = f"wamid.{uuid.uuid4().hex}"
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551181"}],
                "messages": [{"from": "16315551181", "id": wamid, "timestamp": "1700000000",
                              "type": "text", "text": {"body": "Hello there"}}],
                "statuses": [{"id": wamid + ".out", "status": "delivered",
                              "timestamp": "1700000001", "recipient_id": "16315551181",
                              "errors": [{"code": 131047, "title": "Re-engagement"}]}]}}]}]}


def razorpay_event() -> dict:
    return {"entity": "event", "event": "payment.captured", "contains": ["payment"],
            "created_at": 1700000000, "payload": {"payment": {"entity": {
                "id": f"pay_{uuid.uuid4().hex[:14]}", "amount": 50000, "currency": "INR",
                "status": "captured", "email": "gaurav.kumar@example.com",
                "contact": "+919876543210"}}}}


def square_event() -> dict:
    payment = f"sq_{uuid.uuid4().hex[:12]}"
    return {"merchant_id": "6SSW7HV8K2ST5", "type": "payment.updated",
            "event_id": str(uuid.uuid4()), "created_at": "2026-11-30T10:00:00Z",
            "data": {"type": "payment", "id": payment, "object": {"payment": {
                "id": payment, "status": "COMPLETED", "buyer_email_address": "a@example.com",
                "amount_money": {"amount": 1500, "currency": "USD"}}}}}


def github_event() -> dict:
    return {"action": "opened", "number": 7, "pull_request": {
        "title": "Fix", "user": {"login": "octocat", "email": "octocat@example.com"}}}


def shopify_event() -> dict:
    return {"id": 820982911946154508, "email": "jon@example.com", "total_price": "199.00",
            "customer": {"first_name": "Jon", "phone": "+16135551212"}}


EVENTS = {"stripe": stripe_event, "paystack": paystack_event, "whatsapp": meta_event,
          "standard": stripe_event, "shop": paystack_event, "razorpay": razorpay_event,
          "square": square_event, "github": github_event, "shopify": shopify_event}


def sign(source: str, body: bytes) -> dict[str, str]:
    secret = SECRETS[f"H_{source.upper()}"]
    if source == "stripe":
        return signing.stripe_headers(body, secret)
    if source == "paystack":
        return signing.paystack_headers(body, secret)
    if source == "whatsapp":
        return signing.meta_headers(body, secret)
    if source == "standard":
        msg_id = f"msg_{uuid.uuid4().hex}"
        try:
            return signing.standard_headers(body, secret, msg_id)
        except UnicodeDecodeError:  # the library signs text only; the scheme signs bytes
            t = str(int(time.time()))
            key = base64.b64decode(secret.removeprefix("whsec_"))
            digest = hmac.new(key, f"{msg_id}.{t}.".encode() + body, hashlib.sha256).digest()
            return {"webhook-id": msg_id, "webhook-timestamp": t,
                    "webhook-signature": "v1," + base64.b64encode(digest).decode()}
    if source == "razorpay":
        return signing.razorpay_headers(body, secret, f"evt_{uuid.uuid4().hex}")
    if source == "square":
        return signing.square_headers(body, secret, "http://localhost/webhooks/square")
    if source == "github":
        return signing.github_headers(body, secret, str(uuid.uuid4()), "pull_request")
    if source == "shopify":
        return signing.shopify_headers(body, secret, str(uuid.uuid4()))
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={digest}", "X-Event-Id": f"ord_{uuid.uuid4().hex}",
            "Content-Type": "application/json"}


HOSTILE_TEXT = st.one_of(
    st.sampled_from(["\x00", "evt_\x00x", "\ud800", "a\udfffb", "\x1b[2J", "\u202ecod.exe",
                     "\ufeff", "x" * 300, "", " ", "<script>alert(1)</script>", "\\u0000"]),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cs", "Cf", "Lo", "Nd"]),
            max_size=40),
)
HOSTILE = st.one_of(
    HOSTILE_TEXT,
    st.sampled_from([None, True, False, 0, -1, 10 ** 30, -(10 ** 30), 2 ** 63, 2 ** 63 - 1,
                     1e308, float("inf"), float("-inf"), float("nan"), 0.5, [], {}, [None],
                     {"": None}, [[[[]]]], {"id": {"id": {}}}]),
    st.lists(HOSTILE_TEXT, max_size=3),
    st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=3),
)


def paths(node, prefix=()):
    """Every place in a JSON document, the root's children included."""
    children = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, child in children:
        yield prefix + (key,)
        yield from paths(child, prefix + (key,))


def mutated(event: dict, path: tuple, value, add: bool) -> dict:
    event = copy.deepcopy(event)
    parent = event
    for key in path[:-1]:
        parent = parent[key]
    if add and isinstance(parent, dict):
        parent[f"extra_{path[-1]}"] = value
    else:
        parent[path[-1]] = value
    return event


@pytest.fixture
def hostile_app(make_app, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    app = make_app(WEBHOOK_SOURCES=SOURCES, WEBHOOK_MAX_RETRIES=8)
    celery = celery_of(app)
    celery.loader.import_default_modules()
    return app


def counts(app) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(WebhookEvent)),
                db.session.scalar(select(func.count()).select_from(OutboxMessage)))


_task_ids = itertools.count()


def post_and_process(app, source: str, body: bytes, headers: dict | None = None):
    """Post a signed body; check what was stored; run the task as a worker would."""
    before = counts(app)
    response = app.test_client().post(f"/webhooks/{source}", data=body,
                                      headers=headers or sign(source, body))
    assert response.status_code < 500, response.get_data(as_text=True)
    error = response.get_json().get("error")
    assert (error is None) == (response.status_code in (200, 202))
    after = counts(app)
    if response.status_code != 202:
        assert after == before, "a refused or duplicate delivery stored something"
        return response, None
    assert after == (before[0] + 1, before[1] + 1)
    event_id = response.get_json()["id"]
    task = celery_of(app).tasks[PROCESS_EVENT]
    with worker_request(task, f"hostile-{next(_task_ids)}", event_id):
        try:
            task(event_id)
        except Retry:  # pragma: no cover - what this test exists to catch
            pytest.fail(f"bad data put the event into a retry loop: {body[:200]!r}")
    with app.app_context():
        event = db.session.get(WebhookEvent, event_id)
        assert event.status in ("processed", "dead"), (event.status, event.last_error)
        if event.status == "dead":
            assert event.last_error.startswith(FINAL_ERRORS), event.last_error
        return response, event


@pytest.mark.parametrize("source", list(EVENTS))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_contents_never_500_never_half_stored_never_loop(hostile_app, source, data):
    event = EVENTS[source]()
    path = data.draw(st.sampled_from(list(paths(event))), label="path")
    value = data.draw(HOSTILE, label="value")
    add = data.draw(st.booleans(), label="add a key beside it")
    body = json.dumps(mutated(event, path, value, add)).encode()
    post_and_process(hostile_app, source, body)


@pytest.mark.parametrize("source", list(EVENTS))
def test_the_well_formed_event_is_processed(hostile_app, source):
    response, event = post_and_process(hostile_app, source,
                                       json.dumps(EVENTS[source]()).encode())
    assert response.status_code == 202 and event.status == "processed"


@pytest.mark.parametrize("source", list(EVENTS))
@pytest.mark.parametrize("body", [
    b"not json", b"", b"[1, 2]", b'"a string"', b"null", b"{\"id\": ", b"\xff\xfe{}",
    # as deep as fits the source's 16 KB cap: far past what any reader recurses into
    b"[" * 8000 + b"]" * 8000, b'{"a":' * 2500 + b"1" + b"}" * 2500,
    b'{"id": 1' + b"0" * 5000 + b"}",
], ids=["text", "empty", "list", "string", "null", "truncated", "bad utf-8",
        "nested list", "nested object", "5000 digits"])
def test_a_signed_body_that_can_never_be_handled_is_400_for_every_scheme(
        hostile_app, source, body):
    response, _event = post_and_process(hostile_app, source, body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_payload"


@pytest.mark.parametrize("event_id", ["evt_\u0000x", "evt_\ud800", "evt_\x1b[2J"])
def test_an_event_id_that_cannot_be_stored_as_sent_is_400(hostile_app, event_id):
    event = stripe_event()
    event["id"] = event_id
    response, _event = post_and_process(hostile_app, "stripe", json.dumps(event).encode())
    assert response.status_code == 400
    assert "control characters" in response.get_json()["error"]["message"]


def test_duplicate_json_keys_keep_the_last_value(hostile_app):
    event = stripe_event()
    text = json.dumps(event)
    body = ('{"id": "evt_first_' + uuid.uuid4().hex + '", ' + text[1:]).encode()
    response, stored = post_and_process(hostile_app, "stripe", body)
    assert response.status_code == 202 and stored.status == "processed"
    assert stored.event_key == event["id"]


@pytest.mark.parametrize("source", list(EVENTS))
def test_a_body_of_exactly_the_maximum_size_is_taken_and_one_byte_more_is_413(
        hostile_app, source):
    event = EVENTS[source]()
    event["padding"] = ""
    event["padding"] = "p" * (MAX_BODY - len(json.dumps(event).encode()))
    body = json.dumps(event).encode()
    assert len(body) == MAX_BODY
    response, stored = post_and_process(hostile_app, source, body)
    assert response.status_code == 202 and stored.status == "processed"
    event["padding"] += "p"
    too_big, _ = post_and_process(hostile_app, source, json.dumps(event).encode())
    assert too_big.status_code == 413


def test_nul_and_surrogates_in_whatsapp_text_are_kept_storable(hostile_app):
    from whatsapp import WhatsAppMessage

    event = meta_event()
    message = event["entry"][0]["changes"][0]["value"]["messages"][0]
    message["text"]["body"] = "pay \x00 now \ud83d"
    _response, stored = post_and_process(hostile_app, "whatsapp", json.dumps(event).encode())
    assert stored.status == "processed"
    with hostile_app.app_context():
        row = db.session.scalar(select(WhatsAppMessage).where(
            WhatsAppMessage.wamid == message["id"]))
        assert row.text == "pay \ufffd now \ufffd"


# Twilio posts forms, not JSON: every field it sends takes each hostile value.
TWILIO_URL = "http://localhost/webhooks/twilio"
TWILIO_FIELDS = ("MessageSid", "SmsSid", "From", "To", "Body", "NumMedia", "MediaUrl0",
                 "MediaContentType0", "MessageStatus", "ErrorCode", "ErrorMessage")


def twilio_form() -> dict[str, str]:
    return {"MessageSid": f"SM{uuid.uuid4().hex}", "From": "whatsapp:+16315551181",
            "To": "whatsapp:+16315550000", "Body": "Hello there", "NumMedia": "0"}


def twilio_signed(form: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    from urllib.parse import urlencode

    from twilio.request_validator import RequestValidator

    body = urlencode(form, encoding="utf-8", errors="surrogatepass").encode()
    try:
        signature = RequestValidator(SECRETS["H_TWILIO"]).compute_signature(TWILIO_URL, form)
    except UnicodeEncodeError:  # a lone surrogate cannot be signed as text: a forgery, then
        signature = "bm90IHNpZ25lZA=="
    return body, {"X-Twilio-Signature": signature,
                  "Content-Type": "application/x-www-form-urlencoded"}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(TWILIO_FIELDS), value=HOSTILE_TEXT, status=st.booleans())
def test_hostile_twilio_forms_never_500_never_half_stored_never_loop(hostile_app, field, value,
                                                                     status):
    form = twilio_form()
    if status:
        form["MessageStatus"] = "delivered"
    form[field] = value
    body, headers = twilio_signed(form)
    post_and_process(hostile_app, "twilio", body, headers)


def test_the_well_formed_twilio_message_is_processed(hostile_app):
    body, headers = twilio_signed(twilio_form())
    response, event = post_and_process(hostile_app, "twilio", body, headers)
    assert response.status_code == 202 and event.status == "processed"

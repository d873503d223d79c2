"""Adyen's batches through the real app: each item verified on its own against the
`Adyen` SDK's HMAC validator, stored and handled as its own event; one bad item
refuses only itself; the answer is `[accepted]`."""
import copy
import json

import pytest
from Adyen.util import generate_notification_sig, is_valid_hmac_notification
from celery.exceptions import Retry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from payments.ledger import Payment
from store.task_names import PROCESS_EVENT
from tests.helpers.outbox import relay
from tests.helpers.workers import celery_of, worker_request
from tests.webhooks.test_hostile_payloads import HOSTILE, mutated, paths
from webapp.extensions import db
from webhooks.models import WebhookEvent
from webhooks.processing import process

HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
SOURCES = {"sources": {"adyen": {"scheme": "adyen", "secrets_env": "A_HMAC"}}}


@pytest.fixture
def app(make_app, monkeypatch):
    monkeypatch.setenv("A_HMAC", HMAC_KEY)
    app = make_app(WEBHOOK_SOURCES=SOURCES)
    celery_of(app).loader.import_default_modules()
    return app


def item(psp: str, event_code="AUTHORISATION", success="true", value=1000,
         original=None) -> dict:
    item = {"amount": {"currency": "EUR", "value": value}, "eventCode": event_code,
            "eventDate": "2026-11-30T10:00:00+01:00", "merchantAccountCode": "SluiceShop",
            "merchantReference": f"order-{psp}", "paymentMethod": "visa",
            "pspReference": psp, "reason": "", "success": success,
            "additionalData": {"shopperEmail": "ada@example.com"}}
    if original:
        item["originalReference"] = original
    item["additionalData"]["hmacSignature"] = generate_notification_sig(
        {k: v for k, v in item.items() if k != "additionalData"}, HMAC_KEY).decode()
    return item


def batch(*items) -> bytes:
    return json.dumps({"live": "false", "notificationItems": [
        {"NotificationRequestItem": entry} for entry in items]}).encode()


def post(app, body: bytes):
    return app.test_client().post("/webhooks/adyen", data=body,
                                  headers={"Content-Type": "application/json"})


def events(app) -> list[WebhookEvent]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def test_the_sdk_validates_the_items_sluice_signs_and_stores():
    entry = item("8816178952570071")
    assert is_valid_hmac_notification(copy.deepcopy(entry), HMAC_KEY)
    tampered = copy.deepcopy(entry)
    tampered["amount"]["value"] = 1
    assert not is_valid_hmac_notification(tampered, HMAC_KEY)


def test_a_batch_of_three_with_one_bad_hmac_stores_two_and_refuses_one(app):
    forged = item("PSP-3")
    forged["amount"]["value"] = 1  # signed for 1000
    response = post(app, batch(item("PSP-1"), item("PSP-2"), forged))
    assert response.status_code == 200
    assert (response.get_data(as_text=True), response.mimetype) == ("[accepted]", "text/plain")
    stored = events(app)
    assert [e.event_key for e in stored] == ["PSP-1:AUTHORISATION:true",
                                             "PSP-2:AUTHORISATION:true"]
    assert {e.trust for e in stored} == {"signed"}
    # each is a one-item batch in Adyen's format, which still verifies with the SDK
    for event in stored:
        [entry] = json.loads(event.body)["notificationItems"]
        assert is_valid_hmac_notification(entry["NotificationRequestItem"], HMAC_KEY)
    assert relay(app) == 2


def test_a_batch_with_no_good_item_is_401_and_stores_nothing(app):
    forged = item("PSP-9")
    forged["additionalData"]["hmacSignature"] = "AAAA"
    missing = item("PSP-10")
    del missing["additionalData"]["hmacSignature"]
    response = post(app, batch(forged, missing))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_signature"
    assert events(app) == []


@pytest.mark.parametrize("body", [b"[accepted]", b"{}", b'{"notificationItems": []}',
                                  b'{"notificationItems": [{"x": 1}]}', b"not json"])
def test_a_body_that_is_no_batch_is_400(app, body):
    response = post(app, body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_payload"
    assert events(app) == []


def test_a_resent_batch_is_accepted_again_and_stores_nothing_new(app):
    body = batch(item("PSP-20"), item("PSP-21"))
    assert post(app, body).status_code == 200
    again = post(app, body)
    assert (again.status_code, again.get_data(as_text=True)) == (200, "[accepted]")
    assert len(events(app)) == 2


def test_items_move_the_ledger_and_a_refund_names_the_original(app):
    post(app, batch(item("PSP-30"), item("PSP-31", success="false")))
    post(app, batch(item("PSP-32", "REFUND", original="PSP-30", value=1000)))
    with app.app_context():
        for event in events(app):
            process(db.session, event.id)
        db.session.commit()
        ledger = {p.reference: (p.status, p.amount, p.currency)
                  for p in db.session.scalars(select(Payment))}
    assert ledger == {"PSP-30": ("refunded", 1000, "EUR"), "PSP-31": ("failed", 1000, "EUR")}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_items_signed_with_the_real_key_never_500_never_half_stored_never_loop(
        app, data):
    """Any field of a validly signed item made hostile: 200 (stored, then processed or
    dead at once), or 400 with nothing stored; never a 5xx, never a retry loop."""
    entry = item(f"PSP-H{data.draw(st.integers(0, 10 ** 9))}")
    del entry["additionalData"]
    path = data.draw(st.sampled_from(list(paths(entry))), label="path")
    entry = mutated(entry, path, data.draw(HOSTILE, label="value"),
                    data.draw(st.booleans(), label="add"))
    if isinstance(entry.get("amount"), dict):  # sign what is there, as Adyen would
        try:
            signature = generate_notification_sig(entry, HMAC_KEY).decode()
        except (TypeError, ValueError, KeyError):
            signature = "AAAA"
        entry["additionalData"] = {"hmacSignature": signature}
    before = len(events(app))
    response = post(app, batch(entry))
    assert response.status_code in (200, 400, 401), response.get_data(as_text=True)
    if response.status_code != 200:
        assert len(events(app)) == before
        return
    event = events(app)[-1]
    task = celery_of(app).tasks[PROCESS_EVENT]
    with worker_request(task, f"adyen-h-{event.id}", event.id):
        try:
            task(event.id)
        except Retry:  # pragma: no cover - what this test exists to catch
            pytest.fail("bad data put the event into a retry loop")
    with app.app_context():
        assert db.session.get(WebhookEvent, event.id).status in ("processed", "dead")

"""Signed deliveries to the running web process, applied by the running worker."""
import re
import subprocess

import pytest
import requests
from sqlalchemy import func, select, text

from payments.ledger import Payment
from tests.e2e.conftest import META_SECRET, STRIPE_SECRET, bearer
from tests.e2e.harness import REPO
from tests.e2e.webhook_load import deliver, payment_event, redeliveries
from tests.services import wait_for
from tests.webhooks import signing
from webapp.extensions import db
from webhooks.models import WebhookEvent
from whatsapp import WhatsAppMessage

pytestmark = pytest.mark.e2e


def scalar(app, query):
    with app.app_context():
        return db.session.scalar(query)


def post_stripe(stack, body: bytes):
    return requests.post(stack.url("/webhooks/stripe"), data=body, timeout=10,
                         headers=signing.stripe_headers(body, STRIPE_SECRET))


def test_signed_deliveries_are_applied_by_the_worker(stack, stack_app):
    assert post_stripe(stack, payment_event("evt_e2e_1", "pi_e2e_1")).status_code == 202
    wait_for(lambda: scalar(stack_app, select(Payment.status).where(
        Payment.reference == "pi_e2e_1")) == "succeeded", timeout=30, what="payment applied")

    body = (b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":'
            b'"messages","value":{"messages":[{"from":"15550001111","id":"wamid.E2E",'
            b'"timestamp":"1700000000","type":"text","text":{"body":"hi"}}]}}]}]}')
    response = requests.post(stack.url("/webhooks/whatsapp"), data=body, timeout=10,
                             headers=signing.meta_headers(body, META_SECRET))
    assert response.status_code == 202
    wait_for(lambda: scalar(stack_app, select(WhatsAppMessage.text).where(
        WhatsAppMessage.wamid == "wamid.E2E")) == "hi", timeout=30, what="message stored")


def test_2000_deliveries_of_400_events_at_75_connections_store_and_apply_each_once(
        stack, stack_app):
    statuses = deliver(stack.url("/webhooks/stripe"), redeliveries(400, 5), STRIPE_SECRET,
                       connections=75)
    print(f"statuses: {dict(statuses)}")
    assert statuses == {202: 400, 200: 1600}, statuses
    load = WebhookEvent.event_key.like("evt_load_%")
    assert scalar(stack_app, select(func.count()).where(load)) == 400
    wait_for(lambda: scalar(stack_app, select(func.count()).where(
        load, WebhookEvent.status == "processed")) == 400, timeout=120,
        what="the worker to process all 400 events")
    payments = Payment.reference.like("pi_load_%")
    assert scalar(stack_app, select(func.count()).where(payments)) == 400
    assert scalar(stack_app, select(func.sum(Payment.transitions)).where(payments)) == 400
    assert scalar(stack_app, select(func.count()).where(
        payments, Payment.status != "succeeded")) == 0


def flask_cli(stack, *args: str) -> str:
    result = subprocess.run(["flask", "--app", "webapp", *args], cwd=REPO, env=stack.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def poisoned_reference(stack_app):
    """A payment reference the database refuses, as a broken constraint or trigger would:
    the handler fails on every attempt with an error that is not the data's fault."""
    if stack_app.config["SQLALCHEMY_BACKEND"] == "postgresql":
        add = ("ALTER TABLE payments ADD CONSTRAINT refuse_poison "
               "CHECK (reference <> 'pi_poison') NOT VALID")
        drop = "ALTER TABLE payments DROP CONSTRAINT refuse_poison"
    else:
        add = ("CREATE TRIGGER refuse_poison BEFORE INSERT ON payments "
               "WHEN NEW.reference = 'pi_poison' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        drop = "DROP TRIGGER refuse_poison"
    with stack_app.app_context():
        db.session.execute(text(add))
        db.session.commit()
    yield "pi_poison"
    with stack_app.app_context():
        db.session.execute(text(drop))
        db.session.commit()


def test_a_failing_handler_retries_then_goes_dead_and_replay_runs_it_again(
        stack, stack_app, poisoned_reference):
    accepted = post_stripe(stack, payment_event("evt_poison", poisoned_reference))
    event_id = accepted.json()["id"]

    def event():
        with stack_app.app_context():
            return db.session.get(WebhookEvent, event_id)
    dead = wait_for(lambda: (e := event()) and e.status == "dead" and e, timeout=60,
                    what="the event to be retried and parked as dead")
    assert dead.attempts == 3  # the first try and WEBHOOK_MAX_RETRIES=2 retries
    assert dead.last_error

    listing = flask_cli(stack, "webhooks", "list", "--status", "dead")
    assert re.search(rf"^{event_id} +\d{{4}}-\d\d-\d\d \d\d:\d\d UTC +stripe +"
                     r"payment_intent.succeeded +dead +3 ", listing, re.MULTILINE), listing

    auth = bearer(stack_app, "e2e-admin", ["admin"])
    page = requests.get(stack.url("/v1/admin/webhook-events?status=dead"), headers=auth,
                        timeout=10).json()
    assert event_id in [e["id"] for e in page["events"]]
    replayed = requests.post(stack.url(f"/v1/admin/webhook-events/{event_id}/replay"),
                             headers=auth, timeout=10)
    assert replayed.status_code == 202 and replayed.json()["status"] == "received"
    wait_for(lambda: (e := event()) and e.status == "dead" and e.attempts == 6, timeout=60,
             what="the replayed event to run its retries again")

    # Replaying a processed event re-runs an idempotent handler: no second effect.
    done = post_stripe(stack, payment_event("evt_replay_ok", "pi_replay_ok")).json()["id"]
    wait_for(lambda: scalar(stack_app, select(WebhookEvent.status).where(
        WebhookEvent.id == done)) == "processed", timeout=30, what="processed")
    assert "replaying 1 event(s)" in flask_cli(stack, "webhooks", "replay", str(done))
    wait_for(lambda: scalar(stack_app, select(WebhookEvent.attempts).where(
        WebhookEvent.id == done)) == 2, timeout=30, what="the replay to run")
    assert scalar(stack_app, select(Payment.transitions).where(
        Payment.reference == "pi_replay_ok")) == 1

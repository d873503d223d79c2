"""Outcomes pushed out through the real processes: gunicorn takes a signed Stripe
webhook or an upload, the worker applies or scans it, the `deliver` process sends
the event to a local receiver that verifies it with the `standardwebhooks` library."""
import json
import time

import pytest
import requests

from tests.documents import files
from tests.e2e.conftest import STRIPE_SECRET, bearer, fresh_stack_environment
from tests.e2e.harness import Stack, app_settings
from tests.fakes.receiver import Receiver
from tests.services import Clamd, wait_for
from tests.webhooks import signing
from webapp import create_app

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def delivering_stack(tmp_path_factory, worker_index):
    tmp_path = tmp_path_factory.mktemp("deliveries")
    clamd = Clamd(tmp_path / "clamd").start()
    env = fresh_stack_environment(tmp_path, worker_index, "deliveries_e2e")
    env.update(CLAMD_URL=clamd.url, STORAGE_DIR=str(tmp_path / "storage"),
               WORKER_CONCURRENCY="2", DELIVERY_POLL_INTERVAL="0.2",
               DELIVERY_RETRY_SCHEDULE="0.5,0.5,0.5,0.5")
    stack = Stack(tmp_path / "logs", env)
    stack.release()
    stack.start("web", "worker", "deliver")
    app = create_app(app_settings(env))
    admin = bearer(app, "e2e-admin", ["admin", "documents:read", "documents:write"])
    try:
        stack.wait_ready()
        yield stack, admin
    finally:
        stack.stop()
        clamd.stop()
        app.extensions["sluice.db"].engine.dispose()


@pytest.fixture
def receivers():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]
    yield make
    for receiver in made:
        receiver.stop()


def subscribe(stack, admin, receiver: Receiver, events: list[str]) -> dict:
    response = requests.post(stack.url("/v1/admin/destinations"), headers=admin, timeout=10,
                             json={"name": "backend", "url": receiver.url, "events": events,
                                   "allowed_networks": ["127.0.0.0/8"], "allow_http": True})
    assert response.status_code == 201, response.text
    created = response.json()
    receiver.secrets.append(created["secret"])
    return created


def send_stripe(stack, event_id: str, kind: str, intent: str) -> None:
    body = json.dumps({"id": event_id, "type": kind, "created": int(time.time()),
                       "data": {"object": {"id": intent, "amount": 4200,
                                           "currency": "eur"}}}).encode()
    response = requests.post(stack.url("/webhooks/stripe"), data=body, timeout=10,
                             headers=signing.stripe_headers(body, STRIPE_SECRET))
    assert response.status_code in (200, 202), response.text


def test_a_stripe_payment_twice_reaches_the_backend_once_verified(delivering_stack, receivers):
    stack, admin = delivering_stack
    backend = receivers()
    subscribe(stack, admin, backend, ["payment.*"])
    send_stripe(stack, "evt_e2e_paid", "payment_intent.succeeded", "pi_e2e_1")
    send_stripe(stack, "evt_e2e_paid", "payment_intent.succeeded", "pi_e2e_1")  # again
    [got] = backend.wait_for(1, timeout=60)
    assert got.verified
    assert got.payload["type"] == "payment.updated"
    assert got.payload["data"]["reference"] == "pi_e2e_1"
    assert got.payload["data"]["status"] == "succeeded"
    time.sleep(2)  # several dispatcher passes: still one
    assert len(backend.received) == 1


def test_a_clean_upload_reaches_the_backend_as_document_scanned(delivering_stack, receivers):
    stack, admin = delivering_stack
    backend = receivers()
    subscribe(stack, admin, backend, ["document.scanned"])
    response = requests.post(stack.url("/v1/documents"), headers=admin, timeout=30,
                             files={"file": ("invoice.pdf", files.pdf("deliveries-e2e"))})
    assert response.status_code == 201, response.text
    [got] = backend.wait_for(1, timeout=90)
    assert got.verified and got.payload["type"] == "document.scanned"
    assert got.payload["data"]["id"] == response.json()["id"]
    assert got.payload["data"]["status"] == "clean"
    assert got.payload["data"]["origin"] == {"kind": "upload"}


def test_500_three_times_then_200_is_four_attempts_of_one_webhook_id(
        delivering_stack, receivers):
    stack, admin = delivering_stack
    backend = receivers(statuses=[500, 500, 500])
    created = subscribe(stack, admin, backend, ["payment.*"])
    send_stripe(stack, "evt_e2e_retry", "payment_intent.succeeded", "pi_e2e_2")
    got = backend.wait_for(4, timeout=60)
    assert all(r.verified for r in got)
    assert len({r.webhook_id for r in got}) == 1

    def succeeded():
        listing = requests.get(stack.url(f"/v1/admin/destinations/{created['id']}/deliveries"),
                               headers=admin, timeout=10).json()["deliveries"]
        return listing and listing[0]["status"] == "succeeded" and listing[0]
    delivery = wait_for(succeeded, timeout=30, what="the delivery to succeed")
    assert delivery["attempts"] == 4
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500, 200]

"""Deliveries, driven step by step in one process: the dispatcher's pass and each
worker's attempt are called as the relay thread and the `deliveries` task call them,
against a real local receiver that verifies with the `standardwebhooks` library."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from deliveries.dispatch import DispatchSettings, dispatch
from deliveries.models import Delivery, DeliveryAttempt, Destination
from deliveries.sending import HttpSessions, SendSettings, deliver
from store.audit import AuditLog
from store.outbox import OutboxMessage
from store.task_names import DELIVER
from tests.fakes.receiver import Receiver
from tests.outcomes.test_event_feed import apply, token
from tests.webhooks.test_processing import stripe
from webapp.extensions import db

LOCAL = {"allowed_networks": ["127.0.0.0/8"], "allow_http": True}
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
FAST = SendSettings(timeout=5, schedule=(0, 0, 0), failure_threshold=3, probe_interval=0,
                    disable_after=3600)


@pytest.fixture
def admin(app):
    return token(app, "ops", ["admin"])


@pytest.fixture
def receiver():
    found = []

    def make(*args, **kwargs):
        found.append(Receiver(*args, **kwargs))
        return found[-1]
    yield make
    for item in found:
        item.stop()


def create(client, headers, **body):
    response = client.post("/v1/admin/destinations", json=body,
                           headers={"Authorization": headers["Authorization"]})
    return response


def destination(client, admin, url, events=("payment.*",), **extra):
    response = create(client, admin, name="shop", url=url, events=list(events),
                      **{**LOCAL, **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def run_deliveries(app, settings: SendSettings = FAST, rounds: int = 1,
                   in_flight: int = 8) -> int:
    """`rounds` of: the dispatcher's pass, then each handed-out delivery attempted.
    How many attempts were made."""
    made, http = 0, HttpSessions()
    with app.app_context():
        for _ in range(rounds):
            dispatch(db.session, DispatchSettings(max_in_flight=in_flight,
                                                  probe_interval=settings.probe_interval))
            rows = db.session.execute(select(OutboxMessage.id, OutboxMessage.kwargs).where(
                OutboxMessage.task_name == DELIVER,
                OutboxMessage.published_at.is_(None))).all()
            db.session.execute(update(OutboxMessage).where(
                OutboxMessage.id.in_([r.id for r in rows])).values(
                published_at=dt.datetime.now(dt.timezone.utc)))
            db.session.commit()
            for row in rows:
                if deliver(db.session, row.kwargs["delivery_id"], settings, http) is not None:
                    made += 1
    return made


def test_a_payment_reaches_the_endpoint_signed_and_verifiable(app, admin, receiver):
    client = app.test_client()
    target = receiver()
    created = destination(client, admin, target.url)
    assert created["secret"].startswith("whsec_") and created["state"] == "active"
    target.secrets.append(created["secret"])
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    assert run_deliveries(app) == 1
    [got] = target.received
    assert got.verified
    assert got.payload["type"] == "payment.updated"
    assert got.payload["data"]["status"] == "succeeded"
    assert got.payload["data"]["version"] == 1
    assert got.webhook_id == got.payload["id"] and got.webhook_id.startswith("evt_")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("Sluice")
    # the secret is shown once: never again on a read
    shown = client.get(f"/v1/admin/destinations/{created['id']}",
                       headers={"Authorization": admin["Authorization"]}).get_json()
    assert "secret" not in shown and created["secret"] not in str(shown)
    assert shown["figures"]["attempts_last_hour"] == 1
    assert shown["figures"]["success_rate_last_hour"] == 1.0
    assert run_deliveries(app) == 0  # nothing twice


def test_only_the_types_asked_for_and_a_duplicate_webhook_gives_one_event(
        app, admin, receiver):
    client = app.test_client()
    payments, documents = receiver(), receiver()
    destination(client, admin, payments.url, events=["payment.updated"])
    destination(client, admin, documents.url, events=["document.*"])
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))  # delivered twice to us
    run_deliveries(app)
    assert len(payments.received) == 1 and documents.received == []


def test_500_three_times_then_200_is_four_attempts_with_one_webhook_id(app, admin, receiver):
    client = app.test_client()
    target = receiver(statuses=[500, 500, 500])
    created = destination(client, admin, target.url)
    target.secrets.append(created["secret"])
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    assert run_deliveries(app, rounds=6) == 4
    assert len(target.received) == 4 and all(r.verified for r in target.received)
    assert len({r.webhook_id for r in target.received}) == 1
    listing = client.get(f"/v1/admin/destinations/{created['id']}/deliveries",
                         headers={"Authorization": admin["Authorization"]}).get_json()
    [delivery] = listing["deliveries"]
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 4
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500, 200]


def test_after_the_last_attempt_it_fails_and_is_recovered_by_id_and_by_range(
        app, admin, receiver):
    client = app.test_client()
    target = receiver(statuses=[503] * 8)
    created = destination(client, admin, target.url)
    auth = {"Authorization": admin["Authorization"]}
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    settings = SendSettings(timeout=5, schedule=(0,), failure_threshold=100)
    run_deliveries(app, settings, rounds=4)
    [delivery] = client.get(f"/v1/admin/destinations/{created['id']}/deliveries?status=failed",
                            headers=auth).get_json()["deliveries"]
    assert delivery["attempts"] == 2 and delivery["last_status_code"] == 503
    retried = client.post(f"/v1/admin/destinations/{created['id']}/deliveries/"
                          f"{delivery['id']}/retry", headers=auth)
    assert retried.status_code == 202 and retried.get_json()["status"] == "pending"
    run_deliveries(app, settings)
    assert len(target.received) == 3  # one more attempt, answered 503: failed again
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    recovered = client.post(f"/v1/admin/destinations/{created['id']}/recover",
                            json={"since": since}, headers=auth)
    assert recovered.status_code == 202 and recovered.get_json()["recovered"] == 1
    target.statuses.clear()
    run_deliveries(app, settings)
    assert client.get(f"/v1/admin/destinations/{created['id']}/deliveries?status=succeeded",
                      headers=auth).get_json()["deliveries"][0]["id"] == delivery["id"]
    with app.app_context():
        actions = db.session.scalars(select(AuditLog.action).where(
            AuditLog.subject_type.in_(("destination", "delivery")))).all()
    assert {"destination.create", "delivery.retry", "destination.recover"} <= set(actions)


def test_during_a_rotation_the_old_and_the_new_secret_both_verify(app, admin, receiver):
    client = app.test_client()
    auth = {"Authorization": admin["Authorization"]}
    old_holder, new_holder = receiver(), receiver()
    first = destination(client, admin, old_holder.url)
    second = destination(client, admin, new_holder.url)
    old_holder.secrets.append(first["secret"])
    rotated = client.post(f"/v1/admin/destinations/{first['id']}/rotate-secret",
                          json={"grace_seconds": 3600}, headers=auth).get_json()
    assert rotated["secret"] != first["secret"] and rotated["previous_secret_until"]
    rotated_second = client.post(f"/v1/admin/destinations/{second['id']}/rotate-secret",
                                 json={"grace_seconds": 3600}, headers=auth).get_json()
    new_holder.secrets.append(rotated_second["secret"])  # only the new secret
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    run_deliveries(app)
    assert [r.verified for r in old_holder.received] == [True]
    assert [r.verified for r in new_holder.received] == [True]
    assert len(old_holder.received[0].headers["webhook-signature"].split(" ")) == 2
    # without a grace period the old secret stops at once
    client.post(f"/v1/admin/destinations/{first['id']}/rotate-secret",
                json={"grace_seconds": 0}, headers=auth)
    apply(app, stripe("evt_2", "payment_intent.succeeded", 200, intent="pi_2"))
    run_deliveries(app)
    assert [r.verified for r in old_holder.received] == [True, False]
    bad = client.post(f"/v1/admin/destinations/{first['id']}/rotate-secret",
                      json={"grace_seconds": 8 * 86400}, headers=auth)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_grace"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://169.254.169.254/latest",
                                 "http://10.1.2.3/hook", "http://[::1]:8080/",
                                 "http://localhost:8080/"])
def test_a_private_address_is_refused_at_creation(app, admin, url):
    response = create(app.test_client(), admin, name="x", url=url, events=["*"],
                      allow_http=True)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "address_refused"


def test_https_only_unless_allowed_and_bad_input_is_a_clear_400(app, admin):
    client = app.test_client()
    cases = [
        ({"name": "x", "url": "http://93.184.215.14/", "events": ["*"]}, "scheme_refused"),
        ({"name": "x", "url": "https://u:p@93.184.215.14/", "events": ["*"]}, "url_refused"),
        ({"name": "x", "url": "https://93.184.215.14/", "events": []}, "invalid_events"),
        ({"name": "x", "url": "https://93.184.215.14/", "events": ["PAYMENT"]},
         "invalid_events"),
        ({"name": "", "url": "https://93.184.215.14/", "events": ["*"]}, "invalid_name"),
        ({"name": "x", "url": 5, "events": ["*"]}, "invalid_url"),
        ({"name": "x", "url": "https://93.184.215.14/", "events": ["*"],
          "allowed_networks": ["nope"]}, "invalid_networks"),
        ({"name": "x", "url": "https://93.184.215.14/", "events": ["*"], "owner": "me"},
         "invalid_owner"),
    ]
    for body, code in cases:
        response = create(client, admin, **body)
        assert response.status_code == 400, body
        assert response.get_json()["error"]["code"] == code, body
    garbage = client.post("/v1/admin/destinations", data=b"\xff{", headers={
        "Authorization": admin["Authorization"], "Content-Type": "application/json"})
    assert garbage.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(Destination.id)) is None


def test_a_private_address_is_refused_at_send_time_and_a_redirect_is_not_followed(
        app, admin, receiver):
    client = app.test_client()
    trap = receiver()
    bouncer = receiver(redirect_to=trap.url)
    created = destination(client, admin, bouncer.url)
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    run_deliveries(app, SendSettings(timeout=5, schedule=(60,)))
    assert len(bouncer.received) == 1 and trap.received == []
    with app.app_context():
        attempt = db.session.scalar(select(DeliveryAttempt))
        assert attempt.status_code == 302 and not attempt.succeeded
        # the network allowance withdrawn (as if DNS now pointed inside): refused on connect
        db.session.execute(update(Destination).values(allowed_networks=[]))
        db.session.execute(update(Delivery).values(status="pending", next_attempt_at=LONG_AGO))
        db.session.commit()
    run_deliveries(app, SendSettings(timeout=5, schedule=(60, 60)))
    assert len(bouncer.received) == 1
    with app.app_context():
        errors = db.session.scalars(select(DeliveryAttempt.error).order_by(
            DeliveryAttempt.id)).all()
    assert errors[-1] == "refused: address_refused"
    assert created["id"]


def test_the_breaker_opens_probes_once_per_interval_and_a_success_drains_oldest_first(
        app, admin, receiver):
    client = app.test_client()
    target = receiver(statuses=[500] * 3)
    created = destination(client, admin, target.url)
    target.secrets.append(created["secret"])
    auth = {"Authorization": admin["Authorization"]}
    for n in range(5):
        apply(app, stripe(f"evt_{n}", "payment_intent.succeeded", 100 + n, intent=f"pi_{n}"))
    slow_probes = SendSettings(timeout=5, schedule=(0,) * 10, failure_threshold=3,
                               probe_interval=3600, disable_after=3600)
    run_deliveries(app, slow_probes, rounds=3, in_flight=1)
    shown = client.get(f"/v1/admin/destinations/{created['id']}", headers=auth).get_json()
    assert shown["state"] == "failing" and shown["consecutive_failures"] == 3
    assert len(target.received) == 3
    run_deliveries(app, slow_probes, rounds=3, in_flight=1)  # the next probe: in an hour
    assert len(target.received) == 3
    with app.app_context():
        db.session.execute(update(Destination).values(next_probe_at=LONG_AGO))
        db.session.commit()
    run_deliveries(app, slow_probes, rounds=1, in_flight=1)  # the probe succeeds: closed
    assert client.get(f"/v1/admin/destinations/{created['id']}",
                      headers=auth).get_json()["state"] == "active"
    run_deliveries(app, slow_probes, rounds=4, in_flight=1)
    assert len(target.received) == 8
    # pi_0 failed three times; then the probe (pi_0 again) and the rest, oldest first
    assert [r.payload["data"]["reference"] for r in target.received[3:]] == [
        "pi_0", "pi_1", "pi_2", "pi_3", "pi_4"]
    with app.app_context():
        states = db.session.scalars(select(AuditLog.action).where(
            AuditLog.action.in_(("destination.failing", "destination.active")))).all()
    assert states == ["destination.failing", "destination.active"]


def test_a_destination_failing_past_disable_after_is_disabled_until_resumed(
        app, admin, receiver):
    client = app.test_client()
    auth = {"Authorization": admin["Authorization"]}
    target = receiver(statuses=[500] * 10)
    created = destination(client, admin, target.url)
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    apply(app, stripe("evt_2", "payment_intent.succeeded", 100, intent="pi_2"))
    quick = SendSettings(timeout=5, schedule=(0,) * 10, failure_threshold=1, probe_interval=0,
                         disable_after=0)
    run_deliveries(app, quick, rounds=3)
    assert client.get(f"/v1/admin/destinations/{created['id']}",
                      headers=auth).get_json()["state"] == "disabled"
    sent = len(target.received)
    run_deliveries(app, quick, rounds=2)
    assert len(target.received) == sent  # nothing goes to a disabled destination
    target.statuses.clear()
    resumed = client.patch(f"/v1/admin/destinations/{created['id']}", json={"paused": False},
                           headers=auth)
    assert resumed.get_json()["state"] == "active"
    run_deliveries(app, quick, rounds=2)
    assert len(target.received) == sent + 2  # both events, after the resume


def test_a_client_manages_only_its_own_destinations_and_gets_only_its_own_events(
        app, admin, receiver):
    client = app.test_client()
    tenant = token(app, "tenant", ["destinations:write"])
    other = token(app, "other", ["destinations:write"])
    private = create(client, tenant, name="t", url="http://127.0.0.1:1/", events=["*"],
                     allowed_networks=["127.0.0.0/8"], allow_http=True)
    assert private.status_code == 403  # private networks are the admin's to allow
    public = create(client, tenant, name="t", url="https://93.184.215.14/hook", events=["*"])
    assert public.status_code == 201, public.get_json()
    assert public.get_json()["owner_id"] == tenant["id"]
    mine = public.get_json()["id"]
    auth_other = {"Authorization": other["Authorization"]}
    assert client.get(f"/v1/admin/destinations/{mine}", headers=auth_other).status_code == 404
    assert client.delete(f"/v1/admin/destinations/{mine}",
                         headers=auth_other).status_code == 404
    assert client.get("/v1/admin/destinations", headers=auth_other).get_json() == {
        "destinations": []}
    reader = token(app, "reader", ["payments:read"])
    assert client.get("/v1/admin/destinations", headers={
        "Authorization": reader["Authorization"]}).status_code == 403
    # its destination receives no unowned event (a payment)
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    with app.app_context():
        dispatch(db.session, DispatchSettings())
        assert db.session.scalar(select(Delivery.id).where(
            Delivery.destination_id == mine)) is None


def test_send_test_goes_to_that_destination_alone(app, admin, receiver):
    client = app.test_client()
    one, two = receiver(), receiver()
    first = destination(client, admin, one.url, events=["*"])
    destination(client, admin, two.url, events=["*"])
    one.secrets.append(first["secret"])
    sent = client.post(f"/v1/admin/destinations/{first['id']}/send-test",
                       headers={"Authorization": admin["Authorization"]})
    assert sent.status_code == 202
    run_deliveries(app)
    assert [r.payload["type"] for r in one.received] == ["sluice.test"]
    assert one.received[0].verified and two.received == []


def test_paused_destinations_keep_their_deliveries_and_delete_removes_them(
        app, admin, receiver):
    client = app.test_client()
    auth = {"Authorization": admin["Authorization"]}
    target = receiver()
    created = destination(client, admin, target.url)
    client.patch(f"/v1/admin/destinations/{created['id']}", json={"paused": True}, headers=auth)
    apply(app, stripe("evt_1", "payment_intent.succeeded", 100))
    run_deliveries(app)
    assert target.received == []
    shown = client.get(f"/v1/admin/destinations/{created['id']}", headers=auth).get_json()
    assert shown["paused"] and shown["figures"]["backlog"] == 1
    client.patch(f"/v1/admin/destinations/{created['id']}", json={"paused": False},
                 headers=auth)
    run_deliveries(app)
    assert len(target.received) == 1
    assert client.delete(f"/v1/admin/destinations/{created['id']}",
                         headers=auth).status_code == 204
    with app.app_context():
        assert db.session.scalar(select(Delivery.id)) is None
    bad = client.patch(f"/v1/admin/destinations/{created['id']}", json={"paused": "yes"},
                       headers=auth)
    assert bad.status_code == 404


def test_after_a_success_the_worker_takes_the_destinations_next_due_delivery(
        app, admin, receiver):
    client = app.test_client()
    target = receiver()
    created = destination(client, admin, target.url)
    target.secrets.append(created["secret"])
    for n in range(5):
        apply(app, stripe(f"evt_{n}", "payment_intent.succeeded", 100 + n, intent=f"pi_{n}"))
    # one place in flight, one pass: the chain sends the whole backlog, oldest first
    assert run_deliveries(app, in_flight=1) == 1
    assert [r.payload["data"]["reference"] for r in target.received] == [
        f"pi_{n}" for n in range(5)]
    # a chain stops at a failure: the rest wait for their own turn
    target.statuses.extend([500])
    for n in range(5, 8):
        apply(app, stripe(f"evt_{n}", "payment_intent.succeeded", 100 + n, intent=f"pi_{n}"))
    run_deliveries(app, SendSettings(timeout=5, schedule=(3600,)), in_flight=1)
    assert len(target.received) == 6

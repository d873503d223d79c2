"""Handlers: forward-only payments, WhatsApp stored once, idempotent re-runs, replay."""
import json
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from payments.ledger import Payment
from store.audit import AuditLog
from store.payloads import PayloadError
from tests import services
from tests.helpers.outbox import relay
from webapp.extensions import db
from webhooks import ingest
from webhooks.models import WebhookEvent
from webhooks.operations import replay
from webhooks.processing import process, record_failure
from webhooks.schemes import verify
from webhooks.sources import Source
from whatsapp import WhatsAppMessage

STRIPE = Source(name="stripe", scheme="stripe", kind="payment", provider="stripe",
                secrets=(b"s",))


def store(session, payload: dict, key: str, provider="stripe", kind="payment") -> int:
    event = WebhookEvent(source=provider, event_key=key, kind=kind, provider=provider,
                         body=json.dumps(payload).encode())
    session.add(event)
    session.flush()
    return event.id


def stripe(event_id, kind, created, intent="pi_1", **obj) -> dict:
    return {"id": event_id, "type": kind, "created": created,
            "data": {"object": {"id": intent, "amount": 1500, "currency": "eur", **obj}}}


def run(session, *payloads, provider="stripe", kind="payment"):
    for index, payload in enumerate(payloads):
        # a key of its own: id(payload) repeats once an earlier payload is freed
        process(session, store(session, payload, f"k{index}-{uuid.uuid4().hex}", provider,
                               kind))
    session.flush()


def payment(session, reference="pi_1", provider="stripe") -> Payment:
    return session.scalar(select(Payment).where(Payment.reference == reference,
                                                Payment.provider == provider))


@pytest.fixture
def session(app):
    with app.app_context():
        yield db.session


def test_the_happy_path_moves_forward_and_counts_each_change(session):
    run(session, stripe("e1", "payment_intent.created", 100),
        stripe("e2", "payment_intent.succeeded", 200),
        stripe("e3", "charge.refunded", 300, intent="ch_1", payment_intent="pi_1"))
    row = payment(session)
    assert (row.status, row.amount, row.currency, row.transitions) == ("refunded", 1500,
                                                                       "eur", 3)
    assert row.last_event_id == "e3"


def test_out_of_order_and_stale_events_never_move_a_payment_back(session):
    run(session, stripe("e3", "charge.refunded", 300, intent="ch_1", payment_intent="pi_1"),
        stripe("e2", "payment_intent.succeeded", 200),
        stripe("e1", "payment_intent.created", 100))
    assert payment(session).status == "refunded"  # created from the refund, then stuck

    run(session, stripe("f2", "payment_intent.succeeded", 200, intent="pi_2"),
        stripe("f1", "payment_intent.payment_failed", 100, intent="pi_2"))
    assert payment(session, "pi_2").status == "succeeded"


def test_a_failed_payment_can_still_succeed_but_a_newer_failure_cannot_undo_success(session):
    run(session, stripe("g1", "payment_intent.payment_failed", 100, intent="pi_3"),
        stripe("g2", "payment_intent.succeeded", 200, intent="pi_3"),
        stripe("g3", "payment_intent.payment_failed", 300, intent="pi_3"))
    row = payment(session, "pi_3")
    assert (row.status, row.transitions) == ("succeeded", 2)


def test_processing_an_event_twice_applies_its_effect_once(session):
    event_id = store(session, stripe("h1", "payment_intent.succeeded", 100, intent="pi_4"),
                     "h1")
    event = session.get(WebhookEvent, event_id)  # loaded in this session beforehand
    process(session, event_id)
    assert (event.status, event.attempts) == ("processed", 1)
    process(session, event_id)
    assert payment(session, "pi_4").transitions == 1
    assert (event.status, event.attempts) == ("processed", 2)


def test_event_types_we_do_not_act_on_are_processed_without_effect(session):
    run(session, {"id": "x", "type": "customer.created", "data": {"object": {"id": "c"}}})
    assert session.scalar(select(Payment)) is None


def test_paystack_charges_transfers_and_refunds(session):
    run(session,
        {"event": "charge.success", "data": {"id": 1, "reference": "ps_1", "amount": 5000,
                                             "currency": "NGN",
                                             "paid_at": "2026-01-01T10:00:00Z"}},
        {"event": "transfer.failed", "data": {"id": 2, "reference": "tr_1",
                                              "updated_at": "2026-01-01T10:00:00Z"}},
        {"event": "refund.processed", "data": {"id": 3, "transaction_reference": "ps_1",
                                               "updated_at": "2026-01-02T10:00:00Z"}},
        provider="paystack")
    assert payment(session, "ps_1", "paystack").status == "refunded"
    assert payment(session, "tr_1", "paystack").status == "failed"


@pytest.mark.parametrize("payload", [
    [1, 2], {"type": "payment_intent.succeeded"},
    {"type": "payment_intent.succeeded", "data": {"object": {"id": 5}}},
])
def test_payloads_that_can_never_be_handled_raise_payload_error(session, payload):
    with pytest.raises(PayloadError):
        run(session, payload)


def whatsapp(messages=(), statuses=()) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
                                        "messages": list(messages),
                                        "statuses": list(statuses)}}]}]}


def test_inbound_whatsapp_messages_are_stored_once_per_wamid(session):
    text = {"from": "15551230000", "id": "wamid.A", "timestamp": "1700000000",
            "type": "text", "text": {"body": "hello"}}
    image = {"from": "15551230000", "id": "wamid.B", "timestamp": "1700000001",
             "type": "image", "image": {"id": "media-77", "mime_type": "image/jpeg"}}
    run(session, whatsapp([text, image]), whatsapp([text]), provider="meta",
        kind="whatsapp")
    rows = session.scalars(select(WhatsAppMessage).order_by(WhatsAppMessage.wamid)).all()
    assert [(r.wamid, r.message_type, r.text, r.media_id) for r in rows] == [
        ("wamid.A", "text", "hello", None), ("wamid.B", "image", None, "media-77")]


def status(wamid, value, ts, **extra) -> dict:
    return {"id": wamid, "status": value, "timestamp": str(ts), "recipient_id": "1555", **extra}


def test_whatsapp_statuses_only_move_forward_and_failure_keeps_its_error(session):
    run(session, whatsapp(statuses=[status("wamid.O", "delivered", 2)]),
        whatsapp(statuses=[status("wamid.O", "sent", 1)]),
        whatsapp(statuses=[status("wamid.O", "read", 3)]),
        whatsapp(statuses=[status("wamid.O", "delivered", 4)]),
        provider="meta", kind="whatsapp")
    assert session.scalar(select(WhatsAppMessage.status)) == "read"
    error = [{"code": 131047, "title": "Re-engagement message"}]
    run(session, whatsapp(statuses=[status("wamid.F", "sent", 1)]),
        whatsapp(statuses=[status("wamid.F", "failed", 2, errors=error)]),
        whatsapp(statuses=[status("wamid.F", "read", 3)]),
        provider="meta", kind="whatsapp")
    failed = session.scalar(select(WhatsAppMessage).where(WhatsAppMessage.wamid == "wamid.F"))
    assert (failed.status, failed.errors) == ("failed", error)


def test_failures_are_recorded_and_replay_requeues_with_an_audit_entry(app, session, redis_db):
    event_id = store(session, stripe("r1", "payment_intent.succeeded", 100, intent="pi_r"),
                     "r1")
    record_failure(session, event_id, RuntimeError("no row for +14155550123"), dead=True)
    event = session.get(WebhookEvent, event_id)
    # The error's type only: an arbitrary exception's text may quote the payload.
    assert (event.status, event.attempts, event.last_error) == ("dead", 1, "RuntimeError")
    replay(session, event_id, actor="cli:ops")
    session.commit()
    assert session.get(WebhookEvent, event_id).status == "received"
    entry = session.scalar(select(AuditLog))
    assert (entry.actor, entry.action, entry.subject_id) == ("cli:ops", "webhook_event.replay",
                                                             str(event_id))
    assert entry.detail["previous_status"] == "dead"
    assert relay(app) == 1  # what the admin API or CLI enqueued reaches a worker's relay
    assert redis_db.llen("webhooks") == 1


def test_the_audit_log_refuses_update_and_delete_on_postgres(session):
    if session.get_bind().dialect.name != "postgresql":
        services.require_postgres()
    session.add(AuditLog(actor="t", action="a", subject_type="s", subject_id="1", detail={}))
    session.flush()
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with session.begin_nested():
                session.execute(text(statement))


def test_accept_then_process_end_to_end_in_process(session):
    import time

    from tests.webhooks import signing
    body = json.dumps(stripe("evt_ip", "payment_intent.succeeded", 100, intent="pi_ip")).encode()
    headers = signing.stripe_headers(body, "s")
    verify(STRIPE, headers, body, time.time())
    stored = ingest.store_delivery(session.connection(), STRIPE, headers, body)
    process(session, stored.event_id)
    assert payment(session, "pi_ip").status == "succeeded"

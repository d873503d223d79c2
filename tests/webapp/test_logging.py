import json
import logging

import pytest

from webapp.redaction import redact
from tests.workers import celery_of


@pytest.mark.parametrize("raw, leaked", [
    ("contact alice.smith+tag@example.co.uk now", "alice.smith+tag@example.co.uk"),
    ("call +1 (415) 555-0132 today", "555-0132"),
    ("wa_id 16505551234 sent", "16505551234"),
    ("card 4242 4242 4242 4242 charged", "4242 4242 4242 4242"),
    ("card 4000-0566-5566-5556 charged", "4000-0566-5566-5556"),
    ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw used", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ("Authorization: Bearer slc_abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnop"),
    ("Stripe-Signature t=1700000000,v1=" + "5257a869e7ec" * 5, "5257a869e7ec" * 5),
    ("X-Hub-Signature-256 sha256=" + "ab" * 32, "ab" * 32),
    ("webhook-signature v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", "K5oZfzN95Z9UVu1Esf"),
    ('{"client_secret": "pi_3_secret_xyz", "api_key": "k-123"}', "pi_3_secret_xyz"),
    ("password=hunter2&user=bob", "hunter2"),
])
def test_secrets_and_personal_data_are_redacted(raw, leaked):
    assert leaked not in redact(raw)


@pytest.mark.parametrize("harmless", [
    "took 1700000000 at unix time",            # a 10-digit timestamp
    "order 4242424242424241 is not a card",    # fails the Luhn check
    "outbox 12345 published to queue cron",
])
def test_ordinary_numbers_survive(harmless):
    assert redact(harmless) == harmless


def test_log_lines_are_json_with_the_request_id_and_redacted_extras(app, capfd):
    log = logging.getLogger("sluice.test")
    with app.test_request_context("/", headers={"X-Request-Id": "req-42"}):
        app.preprocess_request()
        log.warning("paid by %s", "bob@example.com",
                    extra={"authorization": "Bearer abc", "detail": {"phone": "+15551234567"},
                           "note": "call +44 20 7946 0958"})
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    record = [x for x in lines if x["logger"] == "sluice.test"][0]
    assert record["level"] == "WARNING"
    assert record["request_id"] == "req-42"
    assert record["message"] == "paid by [email]"
    assert record["authorization"] == "[redacted]"
    assert record["detail"] == {"phone": "[redacted]"}
    assert "7946" not in record["note"] and "0958" not in record["note"]


@pytest.mark.parametrize("task_lines", [False, True])
def test_celerys_line_per_task_is_off_unless_asked_for(make_app, capfd, task_lines):
    from celery.app.trace import build_tracer

    app = make_app(LOG_TASK_LINES=task_lines)
    celery = celery_of(app)
    celery.loader.import_default_modules()  # as a worker does on start
    ping = celery.tasks["sluice.ping"]
    # The tracer a worker runs each message through, which writes "succeeded in".
    tracer = build_tracer(ping.name, ping, app=celery, eager=False)
    tracer("task-lines-1", (), {"token": "lines"}, {"delivery_info": {}})
    logged = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    succeeded = [x for x in logged if "succeeded in" in x["message"]]
    assert len(succeeded) == (1 if task_lines else 0)

import json
import logging

import pytest

from store.redaction import redact
from tests.helpers.workers import celery_of


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


# Inputs built to make a backtracking pattern rescan the rest of the text from each
# position: long runs of what a pattern's repetition takes, with what it needs next
# missing. 'a-' * n took 14 s at 16 KB through the old key=value pattern.
ADVERSARIAL = [
    "a-" * 32768, "a" * 65536, "a." * 32768, "a@" * 32768, "a@a." * 16384,
    "secret" * 10922, "secret " * 9362, "token" + " " * 65530, "bearer " * 9362,
    "1 " * 32768, "1" * 65536, "+1 " * 21845, "t=1, " * 13107, "v1," * 21845,
    "whsec_" * 10922, "sha256=" * 9362, "x_" * 32768, "-" * 65536,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda t: repr(t[:12]))
def test_each_redaction_pattern_is_linear_on_adversarial_input(text):
    # Growth, not a wall-clock bound a loaded machine can break: sixteen times the input
    # costs about sixteen times as much when the pattern is linear, and 256 times when
    # it is quadratic; the limit, 48, sits far from both. The cap catches a catastrophic
    # pattern outright ('a-' * 16 KB once took 14 s).
    import time

    from store.redaction import PATTERNS

    def best_of(pattern, replacement, subject: str) -> float:
        best = float("inf")
        # the best of five: a busy core is not the pattern's cost (with two, a loaded
        # run once measured 49 ms against a 48 ms limit for a linear pattern)
        for _ in range(5):
            started = time.perf_counter()
            pattern.sub(replacement, subject)
            best = min(best, time.perf_counter() - started)
        return best

    base = text[:16384]
    for pattern, replacement in PATTERNS:
        small = best_of(pattern, replacement, base)
        large = best_of(pattern, replacement, base * 16)
        assert large < 0.5, (pattern.pattern, large)
        assert large < 48 * max(small, 0.001), (pattern.pattern, small, large)


def test_a_string_past_the_cap_is_cut_before_it_is_redacted():
    from store.redaction import MAX_CHARS, TRUNCATED

    out = redact("x" * (MAX_CHARS * 4) + " bob@example.com")
    assert out.endswith(TRUNCATED) and len(out) == MAX_CHARS + len(TRUNCATED)
    assert "bob@example.com" not in out


@pytest.mark.parametrize("key, sensitive", [
    ("span_id", False), ("trace_id", False), ("spanId", False), ("company", False),
    ("expand", False), ("tokenizer_version", False),
    ("pan", True), ("card_pan", True), ("client_secret", True), ("access_token", True),
    ("accessToken", True), ("X-Hub-Signature-256", True), ("Stripe-Signature", True),
    ("apiKey", True), ("api-key", True), ("phoneNumber", True), ("from_phone", True),
    ("customer_email", True), ("Set-Cookie", True), ("wa_id", True), ("msisdn", True),
])
def test_sensitive_keys_are_whole_words(key, sensitive):
    from store.redaction import REDACTED, redact_value

    assert (redact_value(key, "value") == REDACTED) is sensitive


def test_our_own_ids_reach_the_log_line_intact(app, capfd):
    # A trace id is 32 hex digits; this one has a run of 12 digits a phone pattern takes.
    trace_id, span_id = "ae564cd412345678901a2fc485982f0e", "00f067aa0ba902b7"
    log = logging.getLogger("sluice.test")
    with app.test_request_context("/", headers={"X-Request-Id": "req-74155512345678"}):
        app.preprocess_request()
        log.warning("correlated", extra={"trace_id": trace_id, "span_id": span_id,
                                         "task_id": "6f1c2e9a-0a44-4b1e-9c3d-201612345678"})
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    record = [x for x in lines if x["logger"] == "sluice.test"][0]
    assert (record["trace_id"], record["span_id"]) == (trace_id, span_id)
    assert record["task_id"] == "6f1c2e9a-0a44-4b1e-9c3d-201612345678"
    assert record["request_id"] == "req-74155512345678"

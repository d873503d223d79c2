"""The log leak scanner that runs over the whole suite's logs (tests/log_leaks.py)."""
import io
import logging
import os
from pathlib import Path

import pytest

from tests import log_leaks, services
from tests.e2e.conftest import STRIPE_SECRET
from tests.helpers.workers import celery_of
from tests.webhooks import signing
from webapp.logging import json_handler

HERE = Path("planted.log")
TOKEN = "slc_" + "Q" * 43
# A fixed timestamp: xdist workers must collect identical test ids.
STRIPE_SIG = signing.stripe_headers(b"{}", STRIPE_SECRET, timestamp=1700000000)["Stripe-Signature"]


LEAKS = [
    (f'"authorization": "{TOKEN}"', "API token"),
    ('"secret": "whsec_abcdefgh12345678"', "webhook secret"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz", "bearer credential"),
    (f'"header": "{STRIPE_SIG}"', "Stripe signature"),
    ("X-Hub-Signature-256: sha256=" + "ab" * 32, "Meta signature"),
    ("webhook-signature: v1," + "A" * 43 + "=", "Standard Webhooks signature"),
    ("x-paystack-signature: " + "0f" * 64, "Paystack signature"),
    ("sent to alice.smith+tag@example.co.uk", "email"),
    ("customer +447700900123 replied", "phone number"),
    ("pan 4242 4242 4242 4242 declined", "card number"),
    ("pan 4242-4242-4242-4242 declined", "card number"),
    ("the key is meta_app_secret, in the clear", "test secret (META_SECRET)"),
    ('"from": "15551230000"', "test phone number"),
]


@pytest.mark.parametrize("line, kind", LEAKS,
                         ids=[f"{i}-{kind}" for i, (_, kind) in enumerate(LEAKS)])
def test_each_kind_of_leak_is_found(line, kind):
    leaks = log_leaks.scan_text(line, HERE, log_leaks.known_values())
    assert kind in {leak.kind for leak in leaks}, leaks
    # The report names the file and line but does not repeat the whole value.
    assert all(leak.line_no == 1 and len(leak.excerpt) < 20 for leak in leaks)


@pytest.mark.parametrize("line", [
    '{"time": "2026-11-24T07:01:21+0000", "level": "INFO", "request_id": '
    '"e6e822e6-aeeb-4f57-a887-0a79d257b2a6", "sha256": "' + "3" * 10 + "ab" * 27 + '"}',
    "transport: redis://:**@127.0.0.1:6379/2 celery@vm v5.7.0",
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    '"runtime": 0.00022671399892715272, "ts_ms": 1732431681123, "id": 9223372036854775807',
    "pan 4242 4242 4242 4241 (fails the Luhn check)",
    "wa_id 1155512300001 is a longer number",
    '"secret": "[redacted]", "phone": "[phone ..00]", "email": "[email]"',
])
def test_ordinary_log_lines_are_not_leaks(line):
    assert log_leaks.scan_text(line, HERE, log_leaks.known_values()) == []


def test_known_values_come_from_what_the_tests_configure(tmp_path):
    source = tmp_path / "conftest.py"
    source.write_text(
        'API_SECRET = "s3cr3t-value"\n'
        'config = {"SECRET_KEY": "flask-key-1", "secrets_env": "STRIPE_WEBHOOK_SECRET"}\n'
        'make(token="tok-abcdefgh", name="not-a-secret")\n'
        'payload = {"from": "447700900123", "ts": "1700000000"}\n')
    assert log_leaks.known_values([source]) == {
        "s3cr3t-value": "test secret (API_SECRET)",
        "flask-key-1": "test secret (SECRET_KEY)",
        "tok-abcdefgh": "test secret (token)",
        "447700900123": "test phone number"}


def test_the_production_log_chain_writes_nothing_the_scanner_objects_to():
    """The same record, through our JSON handler and through a bare one."""
    def write(handler: logging.Handler) -> str:
        stream = io.StringIO()
        handler.setStream(stream)
        logger = logging.getLogger("tests.log_leaks.chain")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.warning("delivery from +447700900123 to bob@example.com with %s",
                           STRIPE_SIG, extra={"token": TOKEN, "card": "4242424242424242",
                                              "note": f"Bearer {TOKEN}"})
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
        return stream.getvalue()

    bare = write(logging.StreamHandler())
    assert log_leaks.scan_text(bare, HERE, {}) != []  # there is something to hide
    ours = write(json_handler(logging.StreamHandler()))
    assert log_leaks.scan_text(ours, HERE, log_leaks.known_values()) == [], ours


def test_this_run_is_teeing_its_logs_for_the_scan():
    directory = Path(os.environ["SLUICE_TEST_LOG_DIR"])
    mine = directory / f"pytest-{os.getpid()}.log"
    logging.getLogger("tests.log_leaks").warning("tee check %s", "marker-7f3a")
    assert "marker-7f3a" in mine.read_text()


# -- a database error and a failing handler, on payloads full of personal data --------

PERSONAL = {"name": "Kerry Fisherwood", "email": "kerry.fisherwood@example.org",
            "phone": "+447700900456", "card": "4000056655665556", "note": "flat 4 Elm Rd"}


def _refuse_inserts(app, table: str) -> None:
    """Make the database refuse every new row of `table`, as a constraint would."""
    from sqlalchemy import text

    from webapp.extensions import db

    with app.app_context():
        if db.session.get_bind().dialect.name == "postgresql":
            # PostgreSQL quotes the whole refused row in the error's DETAIL.
            db.session.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT refuse_all_rows "
                                    "CHECK (false) NOT VALID"))
        else:
            db.session.execute(text(f"CREATE TRIGGER refuse_all_rows BEFORE INSERT ON {table} "
                                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        db.session.commit()


def _personal_values_in(text: str) -> list[str]:
    return [value for value in PERSONAL.values() if value in text] + \
        [f"{leak}" for leak in log_leaks.scan_text(text, HERE, log_leaks.known_values())]


def test_a_database_error_at_ingest_logs_no_body_and_no_row(
        make_app, app_config, monkeypatch, capfd):
    import json

    from tests.webhooks.test_hostile_payloads import stripe_event

    monkeypatch.setenv("T_LEAK_STRIPE", "whsec_leak_case")
    app = make_app(WEBHOOK_SOURCES={"sources": {"stripe": {
        "scheme": "stripe", "secrets_env": "T_LEAK_STRIPE"}}},
        DATABASE_URL=services.as_table_owner(app_config["DATABASE_URL"]))  # it alters a table
    _refuse_inserts(app, "webhook_events")
    event = stripe_event()
    event["data"]["object"].update(customer=PERSONAL)
    body = json.dumps(event).encode()
    capfd.readouterr()
    response = app.test_client().post("/webhooks/stripe", data=body, headers={
        **signing.stripe_headers(body, "whsec_leak_case"), "User-Agent": PERSONAL["name"]})
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    logged = capfd.readouterr().err
    assert "unhandled error" in logged and "IntegrityError" in logged  # it was logged
    assert _personal_values_in(logged) == []


def test_a_failing_handler_keeps_personal_data_out_of_logs_and_last_error(
        make_app, app_config, monkeypatch, capfd):
    import json

    from celery.exceptions import Retry

    from tests.helpers.workers import worker_request
    from tests.webhooks.test_hostile_payloads import meta_event
    from webapp.extensions import db
    from webhooks.models import WebhookEvent

    monkeypatch.setenv("T_LEAK_META", "leak_meta_secret")
    app = make_app(WEBHOOK_SOURCES={"sources": {"whatsapp": {
        "scheme": "meta", "secrets_env": "T_LEAK_META"}}},
        DATABASE_URL=services.as_table_owner(app_config["DATABASE_URL"]))  # it alters a table
    celery_of(app).loader.import_default_modules()
    _refuse_inserts(app, "whatsapp_messages")
    event = meta_event()
    value = event["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["profile"]["name"] = PERSONAL["name"]
    value["messages"][0].update({"from": PERSONAL["phone"].lstrip("+"),
                                 "text": {"body": f"{PERSONAL['note']}, {PERSONAL['email']}"}})
    body = json.dumps(event).encode()
    event_id = app.test_client().post("/webhooks/whatsapp", data=body, headers=signing
                                      .meta_headers(body, "leak_meta_secret")).get_json()["id"]
    capfd.readouterr()
    task = celery_of(app).tasks["sluice.webhooks.process_event"]
    with worker_request(task, "leak-handler", event_id), pytest.raises(Retry):
        task(event_id)
    logged = capfd.readouterr().err
    assert "webhook handler failed" in logged
    assert _personal_values_in(logged) == []
    with app.app_context():
        stored = db.session.get(WebhookEvent, event_id)
        assert stored.last_error.startswith("IntegrityError")
        assert _personal_values_in(stored.last_error) == []


def test_celerys_own_failure_line_keeps_the_type_and_loses_the_text():
    """The record Celery's tracer logs when a task raises (celery.app.trace._log_error)."""
    try:
        raise ValueError(f"cannot charge {PERSONAL['card']} for {PERSONAL['name']}")
    except ValueError as exc:
        error = exc
    context = {"hostname": "w1", "id": "t-1", "name": "sluice.documents.scan",
               "exc": repr(error), "traceback": f"Traceback ...\nValueError: {error}",
               "args": "[]", "kwargs": "{'document_id': 7}", "description": "raised unexpected",
               "internal": False}
    record = logging.makeLogRecord({
        "name": "celery.app.trace", "levelno": logging.ERROR, "levelname": "ERROR",
        "msg": "Task %(name)s[%(id)s] %(description)s: %(exc)s", "args": context,
        "exc_info": (ValueError, error, error.__traceback__), "data": context})
    stream = io.StringIO()
    handler = json_handler(logging.StreamHandler(stream))
    handler.handle(record)
    line = stream.getvalue()
    assert "Task sluice.documents.scan[t-1] raised unexpected: ValueError" in line
    assert "test_celerys_own_failure_line" in line  # the frames stay
    assert _personal_values_in(line) == []

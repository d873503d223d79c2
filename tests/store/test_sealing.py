"""Personal data sealed at rest (store/sealing.py): a dump of the database holds no
phone number, message text, webhook body, event payload or signing secret in clear;
keys rotate; people are found by a blind index."""
from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Text, select, type_coerce, update
from sqlalchemy.engine import make_url

from cron.jobs import registry
from cron.runner import run_job
from deliveries.models import Destination
from store import sealing
from store.events import Event
from tests import services
from tests.outcomes.test_event_feed import apply, token
from tests.webhooks.test_processing import stripe, whatsapp
from webapp import create_app
from webapp.config import ConfigError
from webapp.extensions import db
from webapp.models import metadata
from webhooks.models import WebhookEvent
from whatsapp.models import WhatsAppMessage

PHONE, TEXT, EMAIL = "447700900123", "marker text 7731 for the dump", "ada.marker@example.com"
# every spelling a careless copy could leave behind
PHONE_SPELLINGS = ("447700900123", "+447700900123", "+44 7700 900123", "7700900123",
                   "7700 900123")
OTHER_KEY = base64.urlsafe_b64encode(b"o" * 32).decode()


@pytest.fixture
def committed(committing_app):
    """Apps on one database of the test's own, whose commits stay, to be dumped."""
    return lambda **overrides: committing_app("sealing", **overrides)


def store_personal_data(app) -> None:
    message = {"from": PHONE, "id": "wamid.SEALED", "timestamp": "1700000000",
               "type": "text", "text": {"body": TEXT}}
    apply(app, whatsapp([message]), provider="meta", kind="whatsapp")
    apply(app, stripe("evt_sealed", "payment_intent.succeeded", 100, receipt_email=EMAIL))
    admin = token(app, "ops", ["admin"])
    created = app.test_client().post(
        "/v1/admin/destinations", headers={"Authorization": admin["Authorization"]},
        json={"name": "shop", "url": "http://127.0.0.1:9/hook", "events": ["*"],
              "allowed_networks": ["127.0.0.0/8"], "allow_http": True})
    assert created.status_code == 201
    return created.get_json()["secret"]


def dump(app) -> bytes:
    """Everything the database holds, as a backup would: pg_dump, or the SQLite files."""
    url = make_url(app.config["DATABASE_URL"])
    if url.get_backend_name() == "postgresql":
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return subprocess.run(["pg_dump", "--data-only", plain], check=True,
                              capture_output=True, timeout=60).stdout
    path = Path(url.database)
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_a_dump_holds_no_personal_data_in_clear(committed):
    app = committed()
    secret = store_personal_data(app)
    with app.app_context():
        db.session.commit()
    backup = dump(app)
    assert b"wamid.SEALED" in backup  # the dump is real: an identifier that is not personal
    for marker in (*PHONE_SPELLINGS, TEXT, EMAIL, secret, secret.removeprefix("whsec_")):
        assert marker.encode() not in backup, marker
    # and everything reads back as it went in
    with app.app_context():
        message = db.session.scalar(select(WhatsAppMessage))
        assert (message.phone, message.text) == (PHONE, TEXT)
        assert message.phone_index == sealing.blind_index("phone", "+44 7700 900123")
        bodies = [json.loads(body) for body in db.session.scalars(select(WebhookEvent.body))]
        assert EMAIL in json.dumps(bodies)
        assert any(event.data.get("from") == PHONE for event in db.session.scalars(
            select(Event)))
        assert db.session.scalar(select(Destination.secret)) == secret


def test_keys_rotate_resumably_and_status_counts_them(committed):
    app = committed()
    store_personal_data(app)
    with app.app_context():  # a value from before sealing existed
        db.session.execute(update(WhatsAppMessage).values(
            text=type_coerce("written in clear", Text)))
        db.session.commit()
    status = app.test_cli_runner().invoke(args=["keys", "status"])
    assert status.exit_code == 0, status.output
    assert re.search(r"whatsapp_messages\.text +plaintext +1\n", status.output)
    assert "1 values are not sealed yet" in status.output

    first = services.DATA_KEYS.split(":")[0]
    rotated = committed(DATA_KEYS=f"k2:{OTHER_KEY},{services.DATA_KEYS}")
    runner = rotated.test_cli_runner()
    before = runner.invoke(args=["keys", "status"]).output
    assert f"key {first}:" in before and "values left" in before
    done = runner.invoke(args=["keys", "rotate", "--batch", "1"])
    assert done.exit_code == 0, done.output
    assert "resealed" in done.output
    again = runner.invoke(args=["keys", "rotate"])
    assert "resealed 0 values" in again.output
    after = runner.invoke(args=["keys", "status"]).output
    assert f"key {first}: 0 values; it may leave DATA_KEYS" in after
    with rotated.app_context():
        counts = sealing.key_counts(db.session, metadata)
        assert all(set(found) <= {"k2"} for found in counts.values()), counts
        message = db.session.scalar(select(WhatsAppMessage))
        assert (message.phone, message.text) == (PHONE, "written in clear")
    # the old key may go now: a start with k2 alone reads everything
    dropped = committed(DATA_KEYS=f"k2:{OTHER_KEY}")
    with dropped.app_context():
        message = db.session.scalar(select(WhatsAppMessage))
        assert (message.phone, message.text) == (PHONE, "written in clear")
    # but a start that drops k2, which still seals every value, is refused, with the count
    with rotated.app_context():
        sealed = sum(found.get("k2", 0) for found in
                     sealing.key_counts(db.session, metadata).values())
    with pytest.raises(ConfigError, match=f"key 'k2', which still seals {sealed} values"):
        committed(DATA_KEYS=services.DATA_KEYS)


@pytest.mark.parametrize("value, message", [
    ("nokey", "each entry is id:key"),
    ("k1:" + base64.urlsafe_b64encode(b"short").decode(), "not 32 bytes"),
    (f"k1:{OTHER_KEY},k1:{OTHER_KEY}", "listed twice"),
    (f"bad id!:{OTHER_KEY}", "each entry is id:key"),
])
def test_a_malformed_data_key_stops_the_start_with_one_line(make_app, value, message):
    with pytest.raises(ConfigError, match=message):
        make_app(DATA_KEYS=value)


def test_postgresql_needs_its_keys_set(app_config):
    with pytest.raises(ConfigError, match="DATA_KEYS must be set"):
        create_app({**app_config, "DATABASE_URL": "postgresql://u@db.example/x",
                    "DATA_KEYS": None})


def test_the_embedded_default_generates_its_keys_once(app_config, tmp_path, monkeypatch):
    monkeypatch.setenv("SLUICE_INSTANCE_PATH", str(tmp_path / "embedded"))
    config = {**app_config, "DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}",
              "DATA_KEYS": None, "INDEX_KEY": None}
    first = create_app(config).config
    assert first["DATA_KEYS"].startswith("k1:") and len(first["INDEX_KEY"]) == 44
    again = create_app(config).config
    assert (again["DATA_KEYS"], again["INDEX_KEY"]) == (first["DATA_KEYS"], first["INDEX_KEY"])
    assert oct((tmp_path / "embedded" / "data_keys").stat().st_mode)[-3:] == "600"


def test_a_blind_index_matches_every_spelling_and_reveals_none():
    indexes = {sealing.blind_index("phone", spelling) for spelling in
               ("+44 7700 900123", "447700900123", "whatsapp:+447700900123",
                "0044 7700 900123")}
    assert len(indexes) == 1
    assert PHONE not in indexes.pop()
    assert sealing.blind_index("email", " Ada@Example.com ") == \
        sealing.blind_index("email", "ada@example.com")
    assert sealing.blind_index("phone", "+44 7700 900124") != \
        sealing.blind_index("phone", PHONE)


def test_the_rotation_job_reseals_while_two_keys_are_listed(committed):
    app = committed()
    store_personal_data(app)
    rotated = committed(DATA_KEYS=f"k2:{OTHER_KEY},{services.DATA_KEYS}")
    with rotated.app_context():
        job = registry(rotated.config)["rotate_data_keys"]
        run = run_job(db.session, rotated.extensions["sluice.redis"], job, trigger="manual",
                      config=rotated.config)
        assert run.outcome == "succeeded" and run.detail["resealed"] > 0, run.detail
        counts = sealing.key_counts(db.session, metadata)
        assert all(set(found) <= {"k2"} for found in counts.values()), counts
        again = run_job(db.session, rotated.extensions["sluice.redis"], job, trigger="manual",
                        config=rotated.config)
        assert again.detail["resealed"] == 0

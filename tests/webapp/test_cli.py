"""`flask clients ...` and `flask webhooks ...` as an operator types them: headers, readable
times, a sentence for an empty result, and errors that say what to do."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from store.audit import AuditLog
from tests.webhooks import conftest as webhook_sources
from webapp.extensions import db
from webhooks.models import WebhookEvent


@pytest.fixture
def cli_app(make_app, monkeypatch):
    monkeypatch.setenv("T_STRIPE", webhook_sources.STRIPE_SECRET)
    return make_app(WEBHOOK_SOURCES=webhook_sources.SOURCES, OPS_REPLAY_CAP=2)


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_clients_create_needs_scopes_and_revoke_says_when_it_already_was(cli_app):
    refused = run(cli_app, "clients", "create", "no-scopes")
    assert refused.exit_code != 0 and "--scopes" in refused.output
    assert run(cli_app, "clients", "list").output.startswith("No API clients yet")
    assert run(cli_app, "clients", "create", "ops", "--scopes", "admin").exit_code == 0
    listing = run(cli_app, "clients", "list").output.splitlines()
    assert listing[0].split() == ["ID", "NAME", "STATE", "CREATED", "SCOPES"]
    assert "ops" in listing[1] and "active" in listing[1] and " UTC " in listing[1]
    assert run(cli_app, "clients", "revoke", "ops").output.startswith("revoked ops")
    again = run(cli_app, "clients", "revoke", "ops")
    assert again.exit_code == 0 and again.output.startswith("ops was already revoked (")


def test_webhook_listings_have_headers_and_say_when_they_are_empty(cli_app):
    assert run(cli_app, "webhooks", "list").output == "No webhook events match.\n"
    assert run(cli_app, "webhooks", "media").output == "No WhatsApp media items match.\n"
    with cli_app.app_context():
        db.session.add(WebhookEvent(source="stripe", event_key="evt_cli", kind="payment",
                                    provider="stripe", body=b"{}", status="dead", attempts=3,
                                    headers={}))
        db.session.commit()
    lines = run(cli_app, "webhooks", "list").output.splitlines()
    assert lines[0].split()[:4] == ["ID", "RECEIVED", "SOURCE", "TYPE"]
    assert "stripe" in lines[1] and "dead" in lines[1] and " UTC " in lines[1]


def test_replay_without_arguments_says_what_it_needs(cli_app):
    answer = run(cli_app, "webhooks", "replay")
    assert answer.exit_code == 2
    assert "give the EVENT_ID of one event to replay, or --status STATUS" in answer.output


def test_replay_by_status_goes_oldest_first_up_to_the_cap_as_the_console_does(cli_app):
    with cli_app.app_context():
        events = [WebhookEvent(source="stripe", event_key=f"evt_old_{i}", kind="payment",
                               provider="stripe", body=b"{}", status="dead", attempts=3,
                               headers={}) for i in range(3)]
        db.session.add_all(events)
        db.session.commit()
        ids = [e.id for e in events]
    answer = run(cli_app, "webhooks", "replay", "--status", "dead")
    assert answer.output == "replaying 2 event(s)\n"  # OPS_REPLAY_CAP=2
    with cli_app.app_context():
        statuses = {e.id: e.status for e in db.session.scalars(select(WebhookEvent))}
        summary = db.session.scalars(select(AuditLog.detail).where(
            AuditLog.action == "webhook_event.replay_matching")).all()
    assert [statuses[i] for i in ids] == ["received", "received", "dead"]  # oldest first
    assert summary[0]["count"] == 2 and summary[0]["cap"] == 2


def test_send_test_names_the_missing_variable(make_app, monkeypatch):
    monkeypatch.delenv("T_STRIPE", raising=False)
    monkeypatch.delenv("T_STRIPE_OLD", raising=False)
    app = make_app(WEBHOOK_SOURCES=webhook_sources.SOURCES)
    answer = run(app, "webhooks", "send-test", "stripe")
    assert answer.exit_code == 1
    assert "set T_STRIPE, T_STRIPE_OLD in the environment" in answer.output

"""ETags and conditional requests (webapp/conditional.py): a strong ETag from the
representation on single resources, 304 for If-None-Match, 412 and 428 for If-Match
on writes to one resource."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from documents.models import Document
from store.audit import AuditLog
from tests.documents import files
from tests.documents.conftest import upload
from tests.outcomes.test_event_feed import apply, token
from tests.webhooks.test_processing import stripe, whatsapp
from webapp.extensions import db
from webhooks.models import WebhookEvent


def get(client, who, path, **headers):
    return client.get(path, headers={"Authorization": who["Authorization"], **headers})


def revalidates(client, who, path) -> str:
    """The route's ETag, checked to be strong and to give 304 when it is still current."""
    first = get(client, who, path)
    assert first.status_code == 200, first.get_json()
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = get(client, who, path, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    other = get(client, who, path, **{"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.get_json() == first.get_json()
    return etag


def test_a_document_revalidates_until_it_changes(app, client):
    who = token(app, "reader", ["documents:read", "documents:write"])
    document_id = upload(client, who, files.pdf("tagged")).get_json()["id"]
    path = f"/v1/documents/{document_id}"
    etag = revalidates(client, who, path)
    with app.app_context():
        db.session.execute(update(Document).values(status="clean"))
        db.session.commit()
    changed = get(client, who, path, **{"If-None-Match": etag})
    assert changed.status_code == 200 and changed.get_json()["status"] == "clean"
    assert changed.headers["ETag"] != etag


def test_payments_messages_and_imports_carry_etags_and_lists_none(app, client):
    reader = token(app, "reader", ["payments:read", "messages:read", "imports:write",
                                   "documents:read"])
    apply(app, stripe("e1", "payment_intent.created", 100))
    text = {"from": "15551230000", "id": "wamid.T", "timestamp": "1700000001",
            "type": "text", "text": {"body": "hello"}}
    apply(app, whatsapp([text]), provider="meta", kind="whatsapp")
    revalidates(client, reader, "/v1/payments/stripe/pi_1")
    revalidates(client, reader, "/v1/whatsapp/messages/wamid.T")
    for listing in ("/v1/payments", "/v1/whatsapp/messages", "/v1/documents"):
        assert "ETag" not in get(client, reader, listing).headers, listing


def stored_event(app) -> int:
    apply(app, stripe("e1", "payment_intent.created", 100))
    with app.app_context():
        return db.session.scalar(select(WebhookEvent.id))


@pytest.fixture
def event_id(app):
    return stored_event(app)


def replay(client, who, event_id, **headers):
    return client.post(f"/v1/admin/webhook-events/{event_id}/replay",
                       headers={"Authorization": who["Authorization"], **headers})


def replays(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "webhook_event.replay"))


def test_a_replay_with_a_stale_if_match_is_412_and_replays_nothing(app, client, event_id):
    admin = token(app, "ops", ["admin"])
    etag = revalidates(client, admin, f"/v1/admin/webhook-events/{event_id}")
    assert replay(client, admin, event_id, **{"If-Match": etag}).status_code == 202
    assert replays(app) == 1
    stale = replay(client, admin, event_id, **{"If-Match": etag})  # the status moved on
    assert stale.status_code == 412
    assert stale.get_json()["error"]["code"] == "precondition_failed"
    current = get(client, admin, f"/v1/admin/webhook-events/{event_id}").headers["ETag"]
    assert stale.headers["ETag"] == current != etag
    assert replays(app) == 1
    assert replay(client, admin, event_id, **{"If-Match": "*"}).status_code == 202
    assert replay(client, admin, event_id).status_code == 202  # If-Match is optional here


def test_if_match_may_be_required(make_app):
    app = make_app(REQUIRE_IF_MATCH=True)
    event_id = stored_event(app)
    client, admin = app.test_client(), token(app, "ops", ["admin"])
    missing = replay(client, admin, event_id)
    assert missing.status_code == 428
    assert missing.get_json()["error"]["code"] == "precondition_required"
    etag = get(client, admin, f"/v1/admin/webhook-events/{event_id}").headers["ETag"]
    assert replay(client, admin, event_id, **{"If-Match": etag}).status_code == 202
    assert replays(app) == 1

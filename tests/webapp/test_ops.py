"""The ops console through Flask's test client: sign-in, expiry, CSRF, the admin scope,
escaping of hostile content, and the audit entry of every action."""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import time

import pytest
from sqlalchemy import func, select

from documents.models import Document
from store.audit import AuditLog
from store.clients import create_client
from store.db import utcnow
from store.outbox import OutboxMessage
from store.task_names import RUN_JOB, SCAN_DOCUMENT
from tests.documents import files
from tests.helpers.clock import SignerClock
from tests.webhooks import conftest as webhook_sources
from webapp.extensions import db
from webhooks.models import WebhookEvent
from whatsapp.models import WhatsAppMedia

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
EVERY_SCHEME = {"sources": {
    **webhook_sources.SOURCES["sources"],
    "standard": {"scheme": "standard", "provider": "stripe", "secrets_env": ["T_STANDARD"]},
    "shop": {"scheme": "hmac-sha256", "provider": "paystack", "secrets_env": ["T_SHOP"],
             "signature_prefix": "sha256=", "timestamp_header": "X-Timestamp",
             "event_key_header": "X-Event-Id"},
    "twilio": {"scheme": "twilio", "secrets_env": ["T_TWILIO"],
               "public_url": "https://sluice.example/webhooks/twilio"},
    "razorpay": {"scheme": "razorpay", "secrets_env": "T_RAZORPAY"},
    "square": {"scheme": "square", "secrets_env": "T_SQUARE",
               "public_url": "https://sluice.example/webhooks/square"},
    "flutterwave": {"scheme": "flutterwave", "secrets_env": "T_FLUTTERWAVE"},
    "mpesa": {"scheme": "mpesa", "path_token_env": "T_MPESA"},
    "adyen": {"scheme": "adyen", "secrets_env": "T_ADYEN"},
    "github": {"scheme": "github", "secrets_env": "T_GITHUB"},
    "shopify": {"scheme": "shopify", "secrets_env": "T_SHOPIFY"},
    "paypal": {"scheme": "paypal", "webhook_id": "WH-OPS"},
}}
OPS_SECRETS = {"T_STANDARD": "whsec_b3BzLXN0YW5kYXJkLXNlY3JldA==", "T_SHOP": "ops_shop_secret",
               "T_TWILIO": "ops_twilio_auth_token", "T_RAZORPAY": "ops_razorpay",
               "T_SQUARE": "ops_square", "T_FLUTTERWAVE": "ops_flw_hash",
               "T_MPESA": "ops_mpesa_path_token", "T_ADYEN": "0123456789ABCDEF" * 4,
               "T_GITHUB": "ops_github", "T_SHOPIFY": "ops_shopify"}


@pytest.fixture
def ops_app(make_app, webhook_env, monkeypatch):
    for name, value in OPS_SECRETS.items():
        monkeypatch.setenv(name, value)
    return make_app(WEBHOOK_SOURCES=EVERY_SCHEME, AUTH_FAILURE_LIMIT="5/minute")


@pytest.fixture
def webhook_env(monkeypatch):
    for name, value in {"T_STRIPE": webhook_sources.STRIPE_SECRET,
                        "T_STRIPE_OLD": webhook_sources.STRIPE_OLD_SECRET,
                        "T_PAYSTACK": webhook_sources.PAYSTACK_SECRET,
                        "T_META": webhook_sources.META_SECRET,
                        "T_META_VERIFY": webhook_sources.META_VERIFY_TOKEN}.items():
        monkeypatch.setenv(name, value)


def token_for(app, name: str, scopes: list[str]) -> str:
    with app.app_context():
        _, token = create_client(db.session, name, scopes)
        db.session.commit()
    return token


def csrf_of(client, path: str, **kwargs) -> str:
    page = client.get(path, **kwargs)
    assert page.status_code == 200, (path, page.status_code)
    return CSRF.search(page.get_data(as_text=True)).group(1)


def sign_in(client, token: str, **kwargs):
    return client.post("/ops/sign-in", data={
        "token": token, "csrf_token": csrf_of(client, "/ops/sign-in", **kwargs)}, **kwargs)


@pytest.fixture
def operator(ops_app):
    client = ops_app.test_client()
    assert sign_in(client, token_for(ops_app, "alice-oncall", ["admin"])).status_code == 303
    return client


def post(client, path: str, page: str, **data):
    """A form POST as the browser sends it: with the CSRF token of the page it is on."""
    return client.post(path, data={"csrf_token": csrf_of(client, page), **data})


def stored_event(app, **values) -> int:
    defaults = dict(source="stripe", event_key=f"evt_ops_{time.monotonic_ns()}", kind="payment",
                    provider="stripe", body=b'{"id": "evt"}', status="dead", attempts=3,
                    last_error="PayloadError: the event names no payment", headers={})
    with app.app_context():
        event = WebhookEvent(**{**defaults, **values})
        db.session.add(event)
        db.session.commit()
        return event.id


def audit_actions(app, action: str) -> list[tuple[str, str]]:
    with app.app_context():
        return db.session.execute(select(AuditLog.actor, AuditLog.subject_id).where(
            AuditLog.action == action)).all()


def test_root_leads_to_the_console_and_the_console_to_sign_in(ops_app):
    client = ops_app.test_client()
    assert client.get("/").headers["Location"].endswith("/ops/")
    redirected = client.get("/ops/events?status=dead")
    assert redirected.status_code == 303
    assert "/ops/sign-in?next=" in redirected.headers["Location"]


def test_signing_in_sets_a_strict_httponly_cookie_secure_over_https(ops_app):
    token = token_for(ops_app, "ops-cookie", ["admin"])
    plain = sign_in(ops_app.test_client(), token)
    cookie = plain.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ops" in cookie
    assert "Secure" not in cookie
    secure = ops_app.test_client()
    # Over https a POST must also come from a page of the console (Referer, as a browser
    # sends it under the console's same-origin referrer policy).
    assert sign_in(secure, token, base_url="https://ops.example").status_code == 400
    answer = sign_in(secure, token, base_url="https://ops.example",
                     headers={"Referer": "https://ops.example/ops/sign-in"})
    assert "Secure" in answer.headers["Set-Cookie"]
    expires = re.search(r"Expires=([^;]+)", answer.headers["Set-Cookie"]).group(1)
    lifetime = dt.datetime.strptime(expires, "%a, %d %b %Y %H:%M:%S GMT").replace(
        tzinfo=dt.timezone.utc) - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(hours=7, minutes=59) < lifetime <= dt.timedelta(hours=8)
    assert audit_actions(ops_app, "ops.sign_in")[0][0] == "client:ops-cookie"


def test_only_an_admin_token_signs_in_and_failures_spend_the_per_address_budget(ops_app):
    client = ops_app.test_client()
    writer = token_for(ops_app, "uploader", ["documents:write"])
    assert sign_in(client, writer).status_code == 403
    assert sign_in(client, "slc_not-a-token-at-all-not-at-all").status_code == 401
    assert client.get("/ops/").status_code == 303  # still signed out
    for _ in range(3):
        assert sign_in(client, "slc_wrong-again-and-again-and-again").status_code == 401
    # The address's budget (5/minute; the non-admin token was valid and spent none) is
    # spent: bad tokens are refused with 429, and an admin's valid token still signs in.
    assert sign_in(client, "slc_yet-another-wrong-token-here").status_code == 401
    limited = sign_in(client, "slc_and-one-more-wrong-token-here")
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert "Too many failed sign-ins" in limited.get_data(as_text=True)  # a page, not JSON
    assert sign_in(client, token_for(ops_app, "admin-ok", ["admin"])).status_code == 303


def test_a_session_lapses_after_its_lifetime_and_when_its_client_is_revoked(
        ops_app, operator, monkeypatch):
    clock = SignerClock(monkeypatch)
    assert operator.get("/ops/").status_code == 200
    ops_app.config["PERMANENT_SESSION_LIFETIME"] = dt.timedelta(seconds=1)
    clock.ahead = 2
    assert operator.get("/ops/").status_code == 303
    clock.ahead = 0
    ops_app.config["PERMANENT_SESSION_LIFETIME"] = dt.timedelta(hours=8)
    client = ops_app.test_client()
    sign_in(client, token_for(ops_app, "leaver", ["admin"]))
    assert client.get("/ops/").status_code == 200
    with ops_app.app_context():
        from store.clients import ApiClient
        leaver = db.session.scalar(select(ApiClient).where(ApiClient.name == "leaver"))
        leaver.revoked_at = utcnow()
        db.session.commit()
    assert client.get("/ops/").status_code == 303


def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(ops_app, operator):
    event_id = stored_event(ops_app)
    for data in ({}, {"csrf_token": "forged"}):
        refused = operator.post(f"/ops/events/{event_id}/replay", data=data)
        assert refused.status_code == 400
        assert "Nothing was changed" in refused.get_data(as_text=True)
    with ops_app.app_context():
        assert db.session.get(WebhookEvent, event_id).status == "dead"
    assert audit_actions(ops_app, "webhook_event.replay") == []
    # A sign-in form needs one too.
    assert ops_app.test_client().post("/ops/sign-in", data={"token": "x"}).status_code == 400


def test_every_page_renders_with_the_content_security_policy(ops_app, operator):
    event_id = stored_event(ops_app)
    owner = {"Authorization": f"Bearer {token_for(ops_app, 'owner', ['documents:write'])}"}
    document = ops_app.test_client().post(
        "/v1/documents", headers=owner, content_type="multipart/form-data",
        data={"file": (io.BytesIO(files.pdf("ops")), "ops.pdf")}).get_json()
    pages = ["/ops/", "/ops/events", f"/ops/events/{event_id}", "/ops/events/replay?status=dead",
             "/ops/documents", f"/ops/documents/{document['id']}", "/ops/imports", "/ops/jobs",
             "/ops/jobs/relay_outbox", "/ops/media", "/ops/sources"]
    for path in pages:
        page = operator.get(path)
        assert page.status_code == 200, path
        assert page.headers["Content-Security-Policy"].startswith(
            "default-src 'self'; frame-ancestors 'none'"), path
        assert page.headers["X-Frame-Options"] == "DENY"
        html = page.get_data(as_text=True)
        assert "<script>" not in html and " style=" not in html, path  # nothing inline


HOSTILE = "<script>alert(1)</script>"


def test_hostile_content_is_rendered_as_text(ops_app, operator):
    body = json.dumps({"id": "evt", "type": HOSTILE, "link": "javascript:alert(1)",
                       "long": "A" * 5000, "name": "\u202etxt.exe"}).encode()
    event_id = stored_event(ops_app, event_key="evt_\u202eexe.pdf", event_type=HOSTILE[:100],
                            body=body, last_error=HOSTILE,
                            headers={"User-Agent": '"><img src=x onerror=alert(1)>'})
    with ops_app.app_context():
        document = Document(owner_id=1, sha256="d" * 64, size=10, mime_type="application/pdf",
                            filename=f"{HOSTILE}\u202efdp.exe", status="clean", scan_attempts=0)
        db.session.add(document)
        db.session.commit()
        document_id = document.id
    for path in (f"/ops/events/{event_id}", "/ops/events", f"/ops/documents/{document_id}",
                 "/ops/documents"):
        html = operator.get(path).get_data(as_text=True)
        assert HOSTILE not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert "\u202e" not in html and "\u27e6U+202E\u27e7" in html, path  # shown, not obeyed
        assert 'href="javascript:' not in html
    assert "A" * 5000 in operator.get(f"/ops/events/{event_id}").get_data(as_text=True)


def test_every_action_is_audited_under_the_operators_client_name(ops_app, operator):
    event_id = stored_event(ops_app)
    stored_event(ops_app, source="paystack", provider="paystack")
    replayed = post(operator, f"/ops/events/{event_id}/replay", f"/ops/events/{event_id}")
    assert replayed.status_code == 303
    with ops_app.app_context():
        assert db.session.get(WebhookEvent, event_id).status == "received"
    bulk = post(operator, "/ops/events/replay?status=dead&source=paystack",
                "/ops/events/replay?status=dead&source=paystack")
    assert bulk.status_code == 303

    with ops_app.app_context():
        document = Document(owner_id=1, sha256="e" * 64, size=10, mime_type="application/pdf",
                            filename="a.pdf", status="scan_error", scan_attempts=5)
        media = WhatsAppMedia(message_id=1, position=0, source="whatsapp", provider="meta",
                              wamid="wamid.X", kind="image", media_ref="m1", status="failed",
                              error_code="too_large", attempts=1)
        db.session.add_all([document, media])
        db.session.commit()
        document_id, media_id = document.id, media.id
    assert post(operator, f"/ops/documents/{document_id}/rescan",
                f"/ops/documents/{document_id}").status_code == 303
    assert post(operator, "/ops/jobs/relay_outbox/run", "/ops/jobs/relay_outbox").status_code == 303
    assert post(operator, f"/ops/media/{media_id}/retry", "/ops/media").status_code == 303
    sent = post(operator, "/ops/sources/stripe/test", "/ops/sources")
    assert sent.status_code == 303 and "/ops/events/" in sent.headers["Location"]

    actor = "client:alice-oncall"
    for action, subject in [("webhook_event.replay", str(event_id)),
                            ("webhook_event.replay_matching", "*"),
                            ("document.rescan", str(document_id)), ("job.run", "relay_outbox"),
                            ("whatsapp_media.retry", str(media_id)),
                            ("webhook.test_delivery", "stripe")]:
        assert (actor, subject) in audit_actions(ops_app, action), action
    with ops_app.app_context():
        queued = dict(db.session.execute(select(OutboxMessage.task_name, func.count())
                                         .group_by(OutboxMessage.task_name)).all())
    assert queued[SCAN_DOCUMENT] == 1 and queued[RUN_JOB] == 1


def test_replay_all_shows_the_count_and_the_cap_before_anything_happens(ops_app, operator):
    ops_app.config["OPS_REPLAY_CAP"] = 2
    ids = [stored_event(ops_app, source="paystack", provider="paystack") for _ in range(3)]
    page = operator.get("/ops/events/replay?status=dead&source=paystack").get_data(as_text=True)
    assert "<strong>3</strong> event(s) match" in page and "Only the oldest 2" in page
    with ops_app.app_context():
        assert {db.session.get(WebhookEvent, i).status for i in ids} == {"dead"}
    post(operator, "/ops/events/replay?status=dead&source=paystack",
         "/ops/events/replay?status=dead&source=paystack")
    with ops_app.app_context():
        assert [db.session.get(WebhookEvent, i).status for i in ids] == [
            "received", "received", "dead"]


@pytest.mark.parametrize("source", sorted(EVERY_SCHEME["sources"]))
def test_a_test_delivery_of_every_scheme_passes_its_own_verification(ops_app, operator, source):
    from webhooks.schemes import SCHEMES

    assert {s["scheme"] for s in EVERY_SCHEME["sources"].values()} == set(SCHEMES)
    answer = post(operator, f"/ops/sources/{source}/test", "/ops/sources")
    assert answer.status_code == 303
    if source == "paypal":  # only PayPal can sign: the console says how to get a test
        assert answer.headers["Location"].endswith("/ops/sources")
        page = operator.get("/ops/sources").get_data(as_text=True)
        assert "Webhooks simulator" in page
        return
    if source == "unconfigured":  # no secret in its environment: nothing is sent
        assert answer.headers["Location"].endswith("/ops/sources")
        with ops_app.app_context():
            assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
        return
    with ops_app.app_context():
        event = db.session.scalar(select(WebhookEvent).where(WebhookEvent.source == source))
    assert event is not None and answer.headers["Location"].endswith(f"/ops/events/{event.id}")


def test_flask_webhooks_send_test_posts_through_the_real_route(ops_app):
    result = ops_app.test_cli_runner().invoke(args=["webhooks", "send-test", "paystack"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("202 ")
    refused = ops_app.test_cli_runner().invoke(args=["webhooks", "send-test", "unconfigured"])
    assert refused.exit_code == 1 and "no secret" in refused.output


def test_signing_out_ends_the_session_on_the_server(ops_app, operator):
    # A cookie and CSRF token saved before signing out must not work after it.
    token = csrf_of(operator, "/ops/jobs/relay_outbox")
    saved = operator.get_cookie("sluice_ops", path="/ops").value
    assert post(operator, "/ops/sign-out", "/ops/").status_code == 303
    replayed = ops_app.test_client()
    replayed.set_cookie("sluice_ops", saved, path="/ops")
    assert replayed.get("/ops/").status_code == 303
    replayed.set_cookie("sluice_ops", saved, path="/ops")  # sent again, as an attacker would
    ran = replayed.post("/ops/jobs/relay_outbox/run", data={"csrf_token": token})
    assert ran.status_code == 303 and "/ops/sign-in" in ran.headers["Location"]
    assert audit_actions(ops_app, "job.run") == []
    assert [a for a, _ in audit_actions(ops_app, "ops.sign_out")] == ["client:alice-oncall"]


# Issue 31 named these; the test below also walks every format character.
INVISIBLE = ["\u061c", "\u00ad", "\u180e", "\ufff9", "\u034f", "\u3164", "\u115f", "\u202e",
             "\u2066", "\ufe0f", "\U000e0041"]


def test_every_default_ignorable_and_format_character_is_shown_as_a_code_point(
        ops_app, operator):
    import sys
    import unicodedata

    from webapp.ops import reveal_invisible

    name = "inv" + "".join(INVISIBLE) + "oice.pdf"
    event_id = stored_event(ops_app, event_key=name)
    html = operator.get(f"/ops/events/{event_id}").get_data(as_text=True)
    for char in INVISIBLE:
        assert char not in html, f"U+{ord(char):04X}"
        assert f"\u27e6U+{ord(char):04X}\u27e7" in html
    hidden = [c for c in map(chr, range(sys.maxunicode + 1))
              if unicodedata.category(c) == "Cf" and reveal_invisible(c) == c]
    assert hidden == []


@pytest.mark.parametrize("query", ["_method=FOO", "_external=1&status=dead", "_anchor=x",
                                   "before_id=5&status=dead", "_scheme=javascript"])
def test_console_pages_ignore_query_names_they_do_not_filter_by(ops_app, operator, query):
    stored_event(ops_app)
    for page in ("/ops/events", "/ops/events/replay", "/ops/documents", "/ops/media"):
        answer = operator.get(f"{page}?{query}")
        assert answer.status_code == 200, (page, answer.status_code)
        html = answer.get_data(as_text=True)
        assert "_method" not in html and "javascript:" not in html


def test_a_hostile_field_of_64_kb_renders_in_well_under_a_second(ops_app, operator):
    # 'a-' * 8192 pinned a console thread for 14 s in the old redaction pattern.
    body = json.dumps({"id": "evt", "note": "a-" * 32768, "token_hint": "x-" * 16384,
                       "other": "secret-" * 4000}).encode()
    event_id = stored_event(ops_app, source="shop", provider="paystack", body=body)
    started = time.perf_counter()
    page = operator.get(f"/ops/events/{event_id}")
    assert page.status_code == 200
    assert time.perf_counter() - started < 1.0


def test_rescan_all_pending_queues_every_waiting_document_and_is_audited(ops_app, operator):
    with ops_app.app_context():
        waiting = [Document(owner_id=1, sha256=c * 64, size=1, mime_type="text/plain",
                            filename="w.txt", status="pending_scan", scan_attempts=0)
                   for c in "123"]
        done = Document(owner_id=1, sha256="4" * 64, size=1, mime_type="text/plain",
                        filename="c.txt", status="clean", scan_attempts=1)
        db.session.add_all(waiting + [done])
        db.session.commit()
        ids = sorted(d.id for d in waiting)
    answer = post(operator, "/ops/documents/rescan-pending", "/ops/documents")
    assert answer.status_code == 303
    assert "3 pending document(s) queued" in operator.get(
        answer.headers["Location"]).get_data(as_text=True)
    with ops_app.app_context():
        queued = sorted(m.kwargs["document_id"] for m in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.task_name == SCAN_DOCUMENT)))
    assert queued == ids
    assert audit_actions(ops_app, "document.rescan_pending") == [("client:alice-oncall", "*")]


def test_the_overview_names_a_missing_scanner_and_documents_waiting_with_their_fix(
        ops_app, operator):
    # Reported: "Nothing needs attention" while clamd was missing and documents waited.
    from tasks import scanner_state
    from tasks.app_state import redis_client

    ops_app.config["REDRIVE_AFTER"] = 60
    with ops_app.app_context():  # what a worker without CLAMD_URL reports
        scanner_state.record(redis_client(), ops_app.config["REDIS_KEY_PREFIX"],
                             scanner_state.measure(None, 1), 60)
        db.session.add(Document(owner_id=1, sha256="9" * 64, size=1, mime_type="text/plain",
                                filename="w.txt", status="pending_scan", scan_attempts=0,
                                created_at=utcnow() - dt.timedelta(minutes=3)))
        db.session.commit()
    html = operator.get("/ops/").get_data(as_text=True)
    assert "Nothing needs attention" not in html
    assert "no virus scanner (CLAMD_URL is not set)" in html
    assert "documents have waited more than 1 minutes for a scan: Rescan all pending" in html
    assert 'href="/ops/documents?status=pending_scan"' in html
    for component in ("database", "redis", "storage", "clamd"):
        assert f'<div class="label">{component}' in html
    # Colour means "look here": a zero count carries no status colour.
    assert '<div class="figure">0</div>' in html and "status-infected\">0<" not in html


def test_pages_show_names_readable_times_sizes_origins_and_why_a_list_is_empty(
        ops_app, operator):
    from tests.imports import archives

    token = token_for(ops_app, "uploader", ["documents:write", "imports:write"])
    owner = {"Authorization": f"Bearer {token}"}
    client = ops_app.test_client()
    uploaded = client.post("/v1/documents", headers=owner, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(files.pdf("who")), "who.pdf")}).get_json()
    job = client.post("/v1/imports", headers=owner, content_type="multipart/form-data",
                      data={"archive": (io.BytesIO(archives.build(
                          [("in-archive.txt", b"brought by an import\n")])), "a.zip")}
                      ).get_json()
    with ops_app.app_context():
        from documents.imports import ImportSettings, run_import
        from documents.storage.local import LocalStorage
        run_import(db.session, LocalStorage(ops_app.config["STORAGE_DIR"]), job["id"],
                   ImportSettings.from_config(ops_app.config))
        imported = db.session.scalar(select(Document.id).where(
            Document.filename == "in-archive.txt"))
    # The audit log recorded the uploader by id; the console names it.
    trail = operator.get(f"/ops/documents/{uploaded['id']}").get_data(as_text=True)
    assert "client:uploader" in trail and "client:2<" not in trail
    # An imported document says which import brought it.
    page = operator.get(f"/ops/documents/{imported}").get_data(as_text=True)
    assert f'href="/ops/imports/{job["id"]}">import #{job["id"]}</a>' in page
    # Import pages read like the others: no raw ISO timestamps.
    for path in ("/ops/imports", f"/ops/imports/{job['id']}"):
        html = operator.get(path).get_data(as_text=True)
        assert " UTC" in html and "+00:00" not in html, path
    assert "4 MiB" in operator.get("/ops/sources").get_data(as_text=True)
    media = operator.get("/ops/media").get_data(as_text=True)
    assert "No WhatsApp source fetches media" in media and "None." not in media


def test_a_test_delivery_that_cannot_be_sent_says_why_as_an_error(ops_app, operator):
    sent = post(operator, "/ops/sources/unconfigured/test", "/ops/sources")
    assert sent.status_code == 303
    page = operator.get(sent.headers["Location"]).get_data(as_text=True)
    assert '<p class="flash error">unconfigured has no secret: set T_NOT_SET' in page


def test_the_overview_flags_documents_whose_bytes_the_store_lost(ops_app, operator):
    with ops_app.app_context():
        db.session.add(Document(owner_id=1, sha256="8" * 64, size=1, mime_type="text/plain",
                                filename="gone.txt", status="missing_blob", scan_attempts=1))
        db.session.commit()
    html = operator.get("/ops/").get_data(as_text=True)
    assert "1 document(s) lost their bytes in the store" in html
    assert 'href="/ops/documents?status=missing_blob"' in html
    listed = operator.get("/ops/documents?status=missing_blob").get_data(as_text=True)
    assert "gone.txt" in listed


def test_the_documents_page_searches_their_text_with_escaped_snippets_and_previews(
        ops_app, operator, tmp_path):
    from documents.storage.local import LocalStorage
    from documents.text import index
    from tests.services import require_ocr

    require_ocr()  # the preview is rendered with Debian's font
    with ops_app.app_context():
        found = Document(owner_id=1, sha256="f" * 64, size=10, mime_type="image/png",
                         filename="receipt.png", status="clean", scan_attempts=1,
                         text_status="ocr", has_preview=True)
        other = Document(owner_id=1, sha256="a" * 64, size=10, mime_type="application/pdf",
                         filename="other.pdf", status="clean", scan_attempts=1,
                         text_status="extracted")
        db.session.add_all([found, other])
        db.session.flush()
        index.store(db.session, found.id, found.filename,
                    f"Total {HOSTILE} reference 4471 paid", "english")
        index.store(db.session, other.id, other.filename, "nothing to see", "english")
        db.session.commit()
        found_id, other_id = found.id, other.id
    (tmp_path / "p.png").write_bytes(files.rendered(["x"], size=(64, 64)))
    LocalStorage(ops_app.config["STORAGE_DIR"]).put_preview(tmp_path / "p.png", "f" * 64)

    html = operator.get("/ops/documents?q=4471").get_data(as_text=True)
    assert f'href="/ops/documents/{found_id}"' in html
    assert f'href="/ops/documents/{other_id}"' not in html
    assert "<mark>4471</mark>" in html and HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f'src="/ops/documents/{found_id}/preview"' in html
    preview = operator.get(f"/ops/documents/{found_id}/preview")
    assert preview.status_code == 200 and preview.data.startswith(b"\x89PNG")
    assert operator.get(f"/ops/documents/{other_id}/preview").status_code == 404
    # signed out, nothing of it
    assert ops_app.test_client().get(f"/ops/documents/{found_id}/preview").status_code == 303

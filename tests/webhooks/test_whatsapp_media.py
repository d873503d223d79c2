"""WhatsApp media into the document pipeline, through the real ingest, task code, database,
Redis and clamd; only Meta's Graph API and Twilio are a local fake (tests/fakes/media.py).

Each test posts a signed delivery to the app, runs the webhook task and the media
task as a worker runs them, and looks at what an owner or an operator would see.
"""
from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode

import pytest
from celery.exceptions import Retry
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from documents.models import Document
from documents.scanner import client_from_url
from documents.scanning import scan_document
from store.audit import AuditLog
from store.clients import create_client
from store.outbox import OutboxMessage
from store.task_names import FETCH_MEDIA, PROCESS_EVENT
from tests.documents import files
from tests.fakes.listener import Listener
from tests.fakes.media import FakeMediaProviders
from tests.helpers.workers import celery_of, worker_request
from tests.webhooks import signing
from tests.webhooks.conftest import META_SECRET
from webapp.extensions import db
from webhooks.models import WebhookEvent
from webhooks.sources import SourceConfigError, load_sources
from whatsapp import WhatsAppMedia, WhatsAppMessage
from whatsapp.fetching import slot_key

GRAPH_TOKEN = "EAAG-graph-access-token-for-tests"
TWILIO_AUTH_TOKEN = "twilio-auth-token-for-tests"
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
MB = 1024 * 1024
TWILIO_URL = "https://sluice.example/webhooks/wa-twilio"  # what the Twilio console holds
SID_1, SID_2 = "SM" + "0" * 31 + "1", "SM" + "0" * 31 + "2"  # Twilio's message SID shape


@pytest.fixture
def providers(monkeypatch):
    fake = FakeMediaProviders(GRAPH_TOKEN, TWILIO_SID, TWILIO_AUTH_TOKEN)
    for name, value in {"T_WA_TOKEN": GRAPH_TOKEN, "T_TWILIO_TOKEN": TWILIO_AUTH_TOKEN,
                        "T_TWILIO_SID": TWILIO_SID}.items():
        monkeypatch.setenv(name, value)
    yield fake
    fake.stop()


def media_sources(fake: FakeMediaProviders, twilio: dict | None = None,
                  **meta_overrides) -> dict:
    # The fake listens on plain http on loopback: only these keys make that reachable.
    local = {"media_allowed_hosts": ["127.0.0.1"], "media_allow_http": True,
             "media_allowed_networks": ["127.0.0.1/32"]}
    return {"sources": {
        "wa": {"scheme": "meta", "secrets_env": ["T_META"], "media_owner": "wa-inbox",
               "access_token_env": "T_WA_TOKEN", "graph_api_base": fake.graph_base,
               **local, **meta_overrides},
        "wa-twilio": {"scheme": "twilio", "secrets_env": ["T_TWILIO_TOKEN"],
                      "media_owner": "wa-inbox", "account_sid_env": "T_TWILIO_SID",
                      "public_url": TWILIO_URL, **local, **(twilio or {})},
    }}


@pytest.fixture
def wa(make_webhook_app, providers):
    def build(twilio: dict | None = None, **meta_overrides):
        app = make_webhook_app(sources=media_sources(providers, twilio, **meta_overrides))
        with app.app_context():
            _, token = create_client(db.session, "wa-inbox", ["documents:read"])
            db.session.commit()
        return app, {"Authorization": f"Bearer {token}"}
    return build


def meta_message(wamid: str, kind: str, media_id: str, **fields) -> bytes:
    message = {"from": "15551230000", "id": wamid, "timestamp": "1700000000", "type": kind,
               kind: {"id": media_id, "mime_type": fields.pop("mime_type", "application/pdf"),
                      **fields}}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
                                        "messages": [message]}}]}]}).encode()


def task(app, name: str):
    celery = celery_of(app)
    celery.loader.import_default_modules()
    return celery.tasks[name]


def run_worker_task(app, name: str, **kwargs) -> None:
    one = task(app, name)
    with worker_request(one, f"{name}-{kwargs}", *kwargs.values()):
        one(**kwargs)


def deliver_meta(app, body: bytes) -> None:
    response = app.test_client().post("/webhooks/wa", data=body,
                                      headers=signing.meta_headers(body, META_SECRET))
    assert response.status_code == 202, response.get_json()
    run_worker_task(app, PROCESS_EVENT, event_id=response.get_json()["id"])


def fetch_all(app) -> list[WhatsAppMedia]:
    """Run every queued media fetch as the worker would, then return every item."""
    with app.app_context():
        queued = [m.kwargs["media_id"] for m in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.task_name == FETCH_MEDIA))]
    for media_id in queued:
        run_worker_task(app, FETCH_MEDIA, media_id=media_id)
    return items(app)


def items(app) -> list[WhatsAppMedia]:
    with app.app_context():
        rows = db.session.scalars(select(WhatsAppMedia).order_by(WhatsAppMedia.id)).all()
        db.session.expunge_all()
        return rows


def scan_all(app, clamd_url) -> None:
    from tasks.app_state import storage

    with app.app_context():
        scanner = client_from_url(clamd_url, timeout=10)
        for document_id in db.session.scalars(select(Document.id).where(
                Document.status == "pending_scan")).all():
            scan_document(db.session, storage(), scanner, document_id, 100 * MB)
            db.session.commit()


def test_a_pdf_document_message_ends_clean_and_downloadable_by_the_owner(wa, providers,
                                                                         clamd_url):
    app, owner = wa()
    pdf = files.pdf("an invoice sent over WhatsApp")
    providers.add("media-pdf-1", pdf, "application/pdf")
    deliver_meta(app, meta_message("wamid.PDF1", "document", "media-pdf-1",
                                   filename="Invoice 42.pdf"))
    [item] = fetch_all(app)
    assert (item.status, item.error_code, item.kind) == ("fetched", None, "document")
    scan_all(app, clamd_url)

    client = app.test_client()
    listed = client.get("/v1/documents", headers=owner).get_json()["documents"]
    assert [(d["id"], d["filename"], d["status"], d["mime_type"]) for d in listed] == [
        (item.document_id, "Invoice 42.pdf", "clean", "application/pdf")]
    assert listed[0]["origin"] == {"source": "wa", "wamid": "wamid.PDF1"}
    link = client.post(f"/v1/documents/{item.document_id}/download-url", headers=owner)
    served = client.get(link.get_json()["url"])
    assert served.status_code == 200 and served.data == pdf
    # The Graph API and the CDN saw the bearer token; nothing we keep does.
    assert all(auth == f"Bearer {GRAPH_TOKEN}" for _, auth in providers.requests)
    with app.app_context():
        kept = [item.media_ref, item.error_message or "", *(
            json.dumps(m.kwargs) for m in db.session.scalars(select(OutboxMessage)))]
    assert not any(GRAPH_TOKEN in value for value in kept)


def test_an_eicar_media_message_ends_infected_and_is_never_served(wa, providers, clamd_url):
    app, owner = wa()
    providers.add("media-eicar", files.EICAR, "text/plain")
    deliver_meta(app, meta_message("wamid.EICAR", "document", "media-eicar",
                                   mime_type="text/plain", filename="notes.txt"))
    [item] = fetch_all(app)
    assert item.status == "fetched"
    scan_all(app, clamd_url)
    client = app.test_client()
    document = client.get(f"/v1/documents/{item.document_id}", headers=owner).get_json()
    assert document["status"] == "infected"
    refused = client.post(f"/v1/documents/{item.document_id}/download-url", headers=owner)
    assert refused.status_code == 409


def test_the_same_bytes_in_two_messages_are_one_document(wa, providers):
    app, owner = wa()
    pdf = files.pdf("sent twice")
    providers.add("media-a", pdf, "application/pdf")
    providers.add("media-b", pdf, "application/pdf")
    deliver_meta(app, meta_message("wamid.TWICE1", "document", "media-a"))
    deliver_meta(app, meta_message("wamid.TWICE2", "document", "media-b"))
    first, second = fetch_all(app)
    assert first.status == second.status == "fetched"
    assert first.document_id == second.document_id
    with app.app_context():
        assert len(db.session.scalars(select(Document)).all()) == 1


def test_an_oversize_file_fails_with_its_reason_without_being_downloaded(wa, providers):
    app, _owner = wa()
    providers.add("media-huge", b"\xff\xd8\xff" + b"0" * 100, "image/jpeg",
                  reported_size=6 * MB)  # the image cap is 5 MB
    providers.add("media-liar", b"\xff\xd8\xff\xe0" + b"1" * (40 * MB), "image/jpeg",
                  reported_size=1000)  # says small, is not
    deliver_meta(app, meta_message("wamid.HUGE", "image", "media-huge", mime_type="image/jpeg"))
    deliver_meta(app, meta_message("wamid.LIAR", "image", "media-liar", mime_type="image/jpeg"))
    huge, liar = fetch_all(app)
    assert (huge.status, huge.error_code) == ("failed", "too_large")
    assert providers.paths("/cdn/media-huge") == []  # its download never started
    assert (liar.status, liar.error_code) == ("failed", "too_large")
    # We stopped reading at the cap; the rest never left the server (past what the
    # loopback's socket buffers took).
    assert providers.bytes_served["media-liar"] < 20 * MB
    with app.app_context():
        assert db.session.scalars(select(Document)).all() == []


def test_a_sha256_mismatch_fails(wa, providers):
    app, _owner = wa()
    providers.add("media-tampered", files.pdf("changed on the way"), "application/pdf",
                  reported_sha256=hashlib.sha256(b"something else").hexdigest())
    deliver_meta(app, meta_message("wamid.SHA", "document", "media-tampered"))
    [item] = fetch_all(app)
    assert (item.status, item.error_code, item.document_id) == ("failed", "sha256_mismatch", None)


def test_an_expired_url_is_fetched_again_once(wa, providers):
    app, _owner = wa()
    providers.add("media-stale", files.pdf("its first URL had expired"), "application/pdf")
    providers.expire_next_url.add("media-stale")
    deliver_meta(app, meta_message("wamid.STALE", "document", "media-stale"))
    [item] = fetch_all(app)
    assert item.status == "fetched"
    assert len(providers.paths("/v21.0/media-stale")) == 2  # a fresh URL, once
    assert len(providers.paths("/cdn/media-stale")) == 2


def test_an_expired_media_id_is_expired_without_retries(wa, providers):
    app, _owner = wa()
    deliver_meta(app, meta_message("wamid.GONE", "document", "media-deleted-by-meta"))
    [item] = fetch_all(app)  # no Retry raised: decided at once
    assert (item.status, item.error_code, item.attempts) == ("expired", "expired", 1)


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/",
                                    "http://127.0.0.1.nip.io/x", "REDIRECT_TO_127_0_0_2"])
def test_a_redirect_to_a_private_or_unlisted_address_is_refused(wa, providers, target):
    # 127.0.0.2 is on an allowlisted host name here, and listens: only the check of
    # the address actually connected to stands between the fetch and it.
    elsewhere = FakeMediaProviders(GRAPH_TOKEN, host="127.0.0.2")
    try:
        elsewhere.add("secret", b"internal only", "text/plain")
        app, _owner = wa(media_allowed_hosts=["127.0.0.1", "127.0.0.2"])
        location = f"{elsewhere.url}/twilio-cdn/secret" if target.startswith("REDIRECT") \
            else target
        providers.add("media-redirect", files.pdf("x"), "application/pdf", redirect_to=location)
        deliver_meta(app, meta_message("wamid.SSRF", "document", "media-redirect"))
        [item] = fetch_all(app)
        assert item.status == "failed"
        assert item.error_code in {"host_refused", "address_refused"}, item.error_code
        assert elsewhere.requests == []  # nothing was ever sent there
    finally:
        elsewhere.stop()


@pytest.mark.parametrize("host", ["localhost\\.fbcdn.net", "localhost%5C.fbcdn.net",
                                  "fbcdn.net@localhost", "localhost\t.fbcdn.net"])
def test_a_graph_url_that_parsers_read_differently_gets_no_request_and_no_token(
        wa, providers, host):
    # Reported: Graph naming http://localhost\.fbcdn.net/ made the worker connect to
    # localhost with the access token. Loopback is allowed here, as a public attacker
    # host would be: only the URL check stands between the token and the listener.
    listener = Listener()
    try:
        app, _owner = wa(media_allowed_hosts=["fbcdn.net"])
        providers.add("media-leak", files.pdf("x"), "application/pdf",
                      located_url=f"http://{host}:{listener.port}/LEAK")
        deliver_meta(app, meta_message("wamid.LEAK", "document", "media-leak"))
        [item] = fetch_all(app)
        assert (item.status, item.error_code) == ("failed", "url_refused")
        assert listener.seen == []
    finally:
        listener.stop()


def test_a_signed_twilio_media_url_with_a_backslash_gets_no_request_and_no_credentials(
        wa, providers):
    listener = Listener()
    try:
        app, _owner = wa(twilio={"media_allowed_hosts": ["twilio.com"]})
        sid = "SM" + "b" * 32
        params = {"MessageSid": sid, "From": "whatsapp:+15551230000", "NumMedia": "1",
                  "MediaUrl0": f"http://localhost\\.twilio.com:{listener.port}/LEAK",
                  "MediaContentType0": "application/pdf"}
        response = twilio_post(app, params)
        assert response.status_code == 202, response.get_json()
        run_worker_task(app, PROCESS_EVENT, event_id=response.get_json()["id"])
        [item] = fetch_all(app)
        assert (item.status, item.error_code) == ("failed", "url_refused")
        assert listener.seen == []
    finally:
        listener.stop()


def test_graph_429_is_retried_no_sooner_than_its_retry_after(wa, providers):
    app, _owner = wa()
    item = providers.add("media-busy", files.pdf("later"), "application/pdf")
    item.graph_script.append((429, {"Retry-After": "7"}))
    deliver_meta(app, meta_message("wamid.BUSY", "document", "media-busy"))
    [queued] = items(app)
    fetch_task = task(app, FETCH_MEDIA)
    with worker_request(fetch_task, "busy", queued.id), pytest.raises(Retry) as retried:
        fetch_task(media_id=queued.id)
    assert retried.value.when >= 7
    assert items(app)[0].status == "pending"
    run_worker_task(app, FETCH_MEDIA, media_id=queued.id)
    assert items(app)[0].status == "fetched"


def twilio_post(app, params: dict, signature: str | None = None, tamper: dict | None = None):
    signed = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(TWILIO_URL, params)
    body = urlencode({**params, **(tamper or {})})
    return app.test_client().post("/webhooks/wa-twilio", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature or signed})


def test_a_twilio_delivery_with_two_media_items_gives_two_documents(wa, providers):
    app, owner = wa()
    providers.add("ME0001", files.pdf("twilio page one"), "application/pdf")
    providers.add("ME0002", files.png(), "image/png")
    params = {"MessageSid": SID_1, "SmsSid": SID_1, "AccountSid": TWILIO_SID,
              "From": "whatsapp:+15551230000", "To": "whatsapp:+15557650000",
              "Body": "two receipts", "NumMedia": "2",
              "MediaUrl0": providers.twilio_media_url(SID_1, "ME0001"),
              "MediaContentType0": "application/pdf",
              "MediaUrl1": providers.twilio_media_url(SID_1, "ME0002"),
              "MediaContentType1": "image/png"}
    response = twilio_post(app, params)
    assert response.status_code == 202, response.get_json()
    assert twilio_post(app, params).get_json()["status"] == "duplicate"
    run_worker_task(app, PROCESS_EVENT, event_id=response.get_json()["id"])
    first, second = fetch_all(app)
    assert [(m.status, m.position, m.kind) for m in (first, second)] == [
        ("fetched", 0, "document"), ("fetched", 1, "image")]
    listed = app.test_client().get("/v1/documents", headers=owner).get_json()["documents"]
    assert sorted(d["mime_type"] for d in listed) == ["application/pdf", "image/png"]
    assert {d["origin"]["wamid"] for d in listed} == {SID_1}
    with app.app_context():
        message = db.session.scalar(select(WhatsAppMessage).where(
            WhatsAppMessage.wamid == SID_1))
        assert (message.source, message.phone, message.text) == ("wa-twilio", "+15551230000",
                                                                 "two receipts")


def test_a_tampered_or_unsigned_twilio_delivery_is_401(wa, providers):
    app, _owner = wa()
    params = {"MessageSid": SID_2, "From": "whatsapp:+15551230000", "Body": "hi",
              "NumMedia": "0"}
    assert twilio_post(app, params, tamper={"Body": "pay me"}).status_code == 401
    assert twilio_post(app, params, signature="bm90IGEgc2lnbmF0dXJl").status_code == 401
    unsigned = app.test_client().post("/webhooks/wa-twilio", data=urlencode(params),
                                      content_type="application/x-www-form-urlencoded")
    assert unsigned.get_json()["error"]["code"] == "missing_signature"
    assert twilio_post(app, params).status_code == 202


def test_twilio_status_callbacks_move_outbound_messages_forward_only(wa, providers):
    app, _owner = wa()
    outbound, failing = "SM" + "a" * 32, "SM" + "d" * 32
    for sid, sequence in ((outbound, ["queued", "read", "sent", "delivered"]),
                          (failing, ["sent", "undelivered", "delivered", "read"])):
        for status in sequence:
            params = {"MessageSid": sid, "MessageStatus": status, "SmsStatus": status,
                      "To": "whatsapp:+15551230000"}
            response = twilio_post(app, params)
            assert response.status_code == 202, response.get_json()  # each status is news
            run_worker_task(app, PROCESS_EVENT, event_id=response.get_json()["id"])
        assert twilio_post(app, params).get_json()["status"] == "duplicate"  # a resend
    with app.app_context():
        statuses = dict(db.session.execute(select(WhatsAppMessage.wamid,
                                                  WhatsAppMessage.status)).all())
    assert statuses == {outbound: "read", failing: "undelivered"}


def test_media_that_did_not_arrive_are_listed_for_operators_and_can_be_fetched_again(
        wa, providers):
    app, _owner = wa()
    with app.app_context():
        _, admin_token = create_client(db.session, "ops", ["admin"])
        db.session.commit()
    admin = {"Authorization": f"Bearer {admin_token}"}
    deliver_meta(app, meta_message("wamid.LATE", "document", "media-not-yet"))
    [item] = fetch_all(app)
    assert item.status == "expired"
    client = app.test_client()
    listed = client.get("/v1/admin/whatsapp-media?status=expired", headers=admin).get_json()
    assert [(m["id"], m["wamid"], m["error"]["code"]) for m in listed["media"]] == [
        (item.id, "wamid.LATE", "expired")]
    printed = app.test_cli_runner().invoke(args=["webhooks", "media", "--status", "expired"])
    assert printed.exit_code == 0 and "wamid.LATE" in printed.output

    one = client.get(f"/v1/admin/whatsapp-media/{item.id}", headers=admin)
    assert one.get_json() == listed["media"][0]
    providers.add("media-not-yet", files.pdf("there after all"), "application/pdf")
    retried = client.post(f"/v1/admin/whatsapp-media/{item.id}/retry",
                          headers={**admin, "If-Match": one.headers["ETag"]})
    assert (retried.status_code, retried.get_json()["status"]) == (202, "pending")
    stale = client.post(f"/v1/admin/whatsapp-media/{item.id}/retry",
                        headers={**admin, "If-Match": one.headers["ETag"]})
    assert stale.status_code == 412  # it is pending now, not the expired item read
    run_worker_task(app, FETCH_MEDIA, media_id=item.id)
    assert items(app)[0].status == "fetched"
    again = app.test_cli_runner().invoke(args=["webhooks", "media", "retry", str(item.id)])
    assert again.exit_code == 0, again.output
    with app.app_context():
        actions = db.session.scalars(select(AuditLog.actor).where(
            AuditLog.action == "whatsapp_media.retry")).all()
    assert actions[0] == "client:ops" and actions[1].startswith("cli:")


def test_a_sources_fetches_are_bounded_by_its_concurrency(wa, providers, redis_db):
    app, _owner = wa(media_concurrency=1)
    app.config["MEDIA_SLOT_WAIT"] = 0.3
    providers.add("media-queued", files.pdf("waits its turn"), "application/pdf")
    deliver_meta(app, meta_message("wamid.TURN", "document", "media-queued"))
    [queued] = items(app)
    key = slot_key(app.config["REDIS_KEY_PREFIX"], "wa")
    redis_db.zadd(key, {"another-worker": 10 ** 12})  # the one slot is taken
    fetch_task = task(app, FETCH_MEDIA)
    with worker_request(fetch_task, "turn", queued.id), pytest.raises(Retry):
        fetch_task(media_id=queued.id)
    assert providers.requests == []  # nothing sent while the slot was taken
    redis_db.zrem(key, "another-worker")
    run_worker_task(app, FETCH_MEDIA, media_id=queued.id)
    assert items(app)[0].status == "fetched"
    assert redis_db.zcard(key) == 0  # the slot was given back


@pytest.mark.parametrize("table, message", [
    ({"media_owner": "inbox"}, "access_token_env"),
    ({"access_token_env": "T_WA_TOKEN"}, "media_owner"),
    ({"media_owner": "inbox", "access_token_env": "T_UNSET_TOKEN"}, "access_token_env"),
    ({"media_owner": "inbox", "access_token_env": "T_WA_TOKEN",
      "media_allowed_networks": ["not-a-cidr"]}, "not-a-cidr"),
    ({"media_owner": "inbox", "access_token_env": "T_WA_TOKEN",
      "graph_api_base": "http://graph.example/v21.0"}, "graph_api_base"),
])
def test_media_settings_that_cannot_fetch_stop_the_start(providers, table, message):
    with pytest.raises(SourceConfigError, match=message):
        load_sources({"sources": {"wa": {"scheme": "meta", "secrets_env": ["T_META"],
                                         **table}}}, {"T_WA_TOKEN": GRAPH_TOKEN})


def test_a_recut_twilio_form_that_still_verifies_is_refused_and_stores_nothing(wa, providers):
    # Twilio signs "MessageSidSMx...MessageStatusdelivered": the same string as a form
    # whose MessageSid is "SMx...MessageStatusdelivered". Only the SID's shape tells.
    app, _owner = wa()
    recut = {"MessageSid": SID_1 + "MessageStatusdelivered"}
    response = twilio_post(app, recut)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_payload"
    assert twilio_post(app, {"MessageSid": SID_1, "MessageStatus": "delivered"}
                       ).status_code == 202
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 1


def test_a_twilio_source_without_public_url_stops_the_start(providers):
    sources = media_sources(providers)
    del sources["sources"]["wa-twilio"]["public_url"]
    environ = {"T_TWILIO_TOKEN": TWILIO_AUTH_TOKEN, "T_TWILIO_SID": TWILIO_SID,
               "T_META": "x", "T_WA_TOKEN": GRAPH_TOKEN}
    with pytest.raises(SourceConfigError, match="public_url"):
        load_sources(sources, environ)

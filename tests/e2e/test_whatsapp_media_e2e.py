"""WhatsApp media through the real processes: gunicorn takes signed Meta and Twilio
deliveries, the worker stores the messages, fetches their media from a local fake of
the Graph API and Twilio, ingests them as documents and scans them with clamd."""
from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import requests
from twilio.request_validator import RequestValidator

from tests.documents import files
from tests.e2e.conftest import META_SECRET, bearer, fresh_stack_environment, running_stack
from tests.e2e.harness import Stack
from tests.fakes.media import GRAPH_VERSION, FakeMediaProviders
from tests.services import Clamd, wait_for
from tests.webhooks import signing

pytestmark = pytest.mark.e2e
E2E_GRAPH_TOKEN = "e2e-graph-access-token"
E2E_TWILIO_TOKEN = "e2e-twilio-auth-token"
TWILIO_SID = "AC00000000000000000000000000e2e0"


TWILIO_PUBLIC_URL = "https://sluice.example/webhooks/wa-twilio"  # what Twilio signs
TWILIO_SID_E2E = "SM" + "e2e0" * 8


def sources_toml(fake: FakeMediaProviders) -> str:
    local = ('media_allowed_hosts = ["127.0.0.1"]\nmedia_allow_http = true\n'
             'media_allowed_networks = ["127.0.0.1/32"]\nmedia_owner = "wa-inbox"\n')
    return f"""
[sources.wa]
scheme = "meta"
secrets_env = ["E2E_META_SECRET"]
access_token_env = "E2E_GRAPH_TOKEN"
graph_api_base = "{fake.graph_base}"
{local}
[sources.wa-twilio]
scheme = "twilio"
secrets_env = ["E2E_TWILIO_TOKEN"]
account_sid_env = "E2E_TWILIO_SID"
public_url = "{TWILIO_PUBLIC_URL}"
{local}"""


@pytest.fixture
def media_stack(tmp_path, worker_index):
    fake = FakeMediaProviders(E2E_GRAPH_TOKEN, TWILIO_SID, E2E_TWILIO_TOKEN)
    clamd = Clamd(tmp_path / "clamd").start()
    env = fresh_stack_environment(tmp_path, worker_index, "wa_media")
    (tmp_path / "sources.toml").write_text(sources_toml(fake))
    env.update(E2E_GRAPH_TOKEN=E2E_GRAPH_TOKEN, E2E_TWILIO_TOKEN=E2E_TWILIO_TOKEN,
               E2E_TWILIO_SID=TWILIO_SID, CLAMD_URL=clamd.url, WORKER_CONCURRENCY="2")
    try:
        with running_stack(tmp_path, env, "web", "worker") as (stack, app):
            yield stack, fake, bearer(app, "wa-inbox", ["documents:read"])
    finally:
        clamd.stop()
        fake.stop()


def documents_when(stack: Stack, owner: dict, count: int) -> list[dict]:
    def settled():
        listed = requests.get(stack.url("/v1/documents"), headers=owner, timeout=10).json()
        docs = listed["documents"]
        done = len(docs) == count and all(d["status"] in ("clean", "infected") for d in docs)
        return docs if done else None
    return wait_for(settled, timeout=90, interval=0.5, what=f"{count} scanned documents")


def test_meta_and_twilio_media_become_scanned_documents(media_stack):
    stack, fake, owner = media_stack
    pdf = files.pdf("a receipt photographed and sent")
    # A slow CDN: a second delivery of the fetch task would start while the first
    # still downloads, and fetch the bytes again.
    fake.add("media-e2e-pdf", pdf, "application/pdf", delay=1.5)
    fake.add("media-e2e-eicar", files.EICAR, "text/plain")
    fake.add("ME0e2e1", files.png(), "image/png")
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [
            {"from": "15551230000", "id": "wamid.E2E1", "timestamp": "1700000000",
             "type": "document", "document": {"id": "media-e2e-pdf", "filename": "receipt.pdf",
                                              "mime_type": "application/pdf"}},
            {"from": "15551230000", "id": "wamid.E2E2", "timestamp": "1700000001",
             "type": "document", "document": {"id": "media-e2e-eicar", "filename": "x.txt",
                                              "mime_type": "text/plain"}}]}}]}]}).encode()
    delivered = requests.post(stack.url("/webhooks/wa"), data=body, timeout=10,
                              headers=signing.meta_headers(body, META_SECRET))
    assert delivered.status_code == 202, delivered.text

    url = stack.url("/webhooks/wa-twilio")
    params = {"MessageSid": TWILIO_SID_E2E, "From": "whatsapp:+15551230000",
              "To": "whatsapp:+15557650000", "Body": "and a photo", "NumMedia": "1",
              "MediaUrl0": fake.twilio_media_url(TWILIO_SID_E2E, "ME0e2e1"),
              "MediaContentType0": "image/png"}
    signature = RequestValidator(E2E_TWILIO_TOKEN).compute_signature(TWILIO_PUBLIC_URL, params)
    twilio = requests.post(url, data=urlencode(params), timeout=10, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
    assert twilio.status_code == 202, twilio.text

    docs = {d["filename"]: d for d in documents_when(stack, owner, 3)}
    assert {name: (d["status"], d["origin"]["source"]) for name, d in docs.items()} == {
        "receipt.pdf": ("clean", "wa"), "x.txt": ("infected", "wa"),
        f"{TWILIO_SID_E2E}.png": ("clean", "wa-twilio")}
    link = requests.post(stack.url(f"/v1/documents/{docs['receipt.pdf']['id']}/download-url"),
                         headers=owner, timeout=10).json()["url"]
    assert requests.get(link, timeout=10).content == pdf
    refused = requests.post(stack.url(f"/v1/documents/{docs['x.txt']['id']}/download-url"),
                            headers=owner, timeout=10)
    assert refused.status_code == 409
    # One media item, one download: each was published once (by one relay), so the
    # provider saw one lookup and one fetch of its bytes per item.
    assert sorted(fake.bytes_served) == ["ME0e2e1", "media-e2e-eicar", "media-e2e-pdf"]
    assert len(fake.paths(f"/{GRAPH_VERSION}/media-e2e-pdf")) == 1
    assert len(fake.paths("/cdn/media-e2e-pdf")) == 1
    assert len(fake.paths("/2010-04-01/")) == 1 and len(fake.paths("/twilio-cdn/")) == 1
    assert fake.bytes_served["media-e2e-pdf"] == len(pdf)

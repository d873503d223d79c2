"""The shipped nginx front's limits, each with what a client sees, against the real
`web` and `hooks` gunicorns behind it."""
from __future__ import annotations

import socket
import time

import pytest
import requests

from tests.e2e.conftest import STRIPE_SECRET, bearer, fresh_stack_environment, running_stack
from tests.e2e.slow_clients import connect
from tests.services import Front, free_port
from tests.webhooks import signing

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def behind_front(tmp_path_factory, worker_index):
    workdir = tmp_path_factory.mktemp("front")
    env = fresh_stack_environment(workdir, worker_index, "front")
    env.update(HOOKS_PORT=str(free_port()), TRUSTED_PROXY_COUNT="1",
               WEBHOOK_INVALID_SIGNATURE_LIMIT="5/minute")
    with running_stack(workdir, env, "web", "hooks") as (stack, app):
        front = Front(web=f"127.0.0.1:{env['PORT']}",
                      hooks=f"127.0.0.1:{env['HOOKS_PORT']}").start()
        try:
            yield stack, front, app
        finally:
            front.stop()


def raw(port: int, request: bytes, source: str = "127.0.0.1") -> tuple[int, bytes]:
    with connect(port, source) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_envelope(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == code


def test_webhooks_reach_the_hooks_gunicorn_with_the_clients_address(behind_front):
    stack, front, _app = behind_front
    body = b'{"id": "evt_front_1", "type": "payment_intent.created", "data": {"object": {}}}'
    hooks = f"http://127.0.0.1:{stack.env['HOOKS_PORT']}"
    before = answered(hooks, "webhooks.receive"), answered(stack.url(""), "webhooks.receive")
    response = requests.post(front.url("/webhooks/stripe"), data=body, timeout=10,
                             headers=signing.stripe_headers(body, STRIPE_SECRET))
    assert response.status_code == 202, response.text
    assert len(response.headers["X-Request-Id"]) == 32  # the front's own id, passed on
    # Served by `hooks`, not `web`: each gunicorn counts what it answered.
    after = answered(hooks, "webhooks.receive"), answered(stack.url(""), "webhooks.receive")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 0)


def answered(base_url: str, endpoint: str) -> float:
    text = requests.get(f"{base_url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sluice_http_requests_total{")
               and f'endpoint="{endpoint}"' in line)


def test_the_forgery_budget_is_per_client_address_behind_the_front(behind_front):
    # X-Forwarded-For is the client's address (TRUSTED_PROXY_COUNT=1): a forger spends
    # its own budget, and a provider at another address is not refused with it.
    _stack, front, _app = behind_front
    body = b'{"id": "evt_forged"}'
    forged = {"Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"}
    statuses = [raw(front.port, request_bytes("/webhooks/stripe", body, forged),
                    source="127.0.0.9")[0] for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429, statuses
    assert requests.post(front.url("/webhooks/stripe"), data=body, headers=forged,
                         timeout=10).status_code == 401


def request_bytes(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: sluice", f"Content-Length: {len(body)}",
             "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_request_line_or_header_past_8_kb_is_refused_with_the_error_envelope(behind_front):
    _stack, front, _app = behind_front
    assert_envelope(requests.get(front.url("/livez?" + "a" * 9000), timeout=10),
                    414, "uri_too_long")
    assert_envelope(requests.get(front.url("/livez"), headers={"X-Big": "b" * 9000},
                                 timeout=10), 400, "bad_request")


def test_metrics_are_not_served_through_the_front_and_readyz_names_no_version(behind_front):
    stack, front, _app = behind_front
    for path in ("/metrics", "/metrics?x=1"):
        assert_envelope(requests.get(front.url(path), timeout=10), 404, "not_found")
    assert requests.get(stack.url("/metrics"), timeout=10).status_code == 200  # the inside
    ready = requests.get(front.url("/readyz"), timeout=10)
    assert "ClamAV" not in ready.text and "version" not in ready.text


def test_a_webhook_body_past_the_fronts_cap_is_413_before_any_gunicorn_sees_it(behind_front):
    stack, front, _app = behind_front
    status, body = raw(front.port, request_bytes(
        "/webhooks/stripe", b"x" * (9 * 2**20), {"Stripe-Signature": "t=1,v1=00"}))
    assert status == 413 and b'"payload_too_large"' in body
    assert "payload_too_large" not in stack.log("hooks")


def test_a_fifth_concurrent_upload_from_one_address_is_429(behind_front):
    _stack, front, app = behind_front
    token = bearer(app, "front-uploader", ["documents:write"])["Authorization"]
    head = (f"POST /v1/documents HTTP/1.1\r\nHost: sluice\r\nAuthorization: {token}\r\n"
            "Content-Type: text/plain\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n"
            ).encode()
    held = []
    try:
        for _ in range(4):  # four uploads in progress from 127.0.0.7, body half sent
            sock = connect(front.port, "127.0.0.7")
            sock.sendall(head + b"a" * 1000)
            held.append(sock)
        time.sleep(1)  # nginx has read those four requests' headers: they count now
        status, body = raw(front.port, head + b"a" * 1000000, source="127.0.0.7")
        assert status == 429 and b'"rate_limited"' in body
        # another address is not affected
        text = b"a short note from another address\n"
        status, _ = raw(front.port, head.replace(b"1000000", str(len(text)).encode()) + text,
                        source="127.0.0.8")
        assert status == 201
    finally:
        for sock in held:
            sock.close()


def test_an_idle_half_sent_body_is_cut_off_by_the_front(behind_front):
    # client_body_timeout: a body that stops arriving is dropped after 15 s, and the
    # app never saw a thread held for it.
    _stack, front, app = behind_front
    token = bearer(app, "front-idler", ["documents:write"])["Authorization"]
    with connect(front.port, "127.0.0.6", timeout=40) as sock:
        sock.sendall((f"POST /v1/documents HTTP/1.1\r\nHost: sluice\r\nAuthorization: {token}"
                      "\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc").encode())
        try:
            answer = sock.recv(65536)
        except (ConnectionResetError, socket.timeout) as exc:
            answer = type(exc).__name__.encode()
    assert answer in (b"", b"ConnectionResetError") or answer.startswith(b"HTTP/1.1 408"), answer


def test_a_download_link_through_the_front_on_its_own_port_works(behind_front):
    # Reported: with the front on 8091, `Host $host` dropped the port, and the link came
    # back as http://127.0.0.1/v1/files/..., which reaches nothing.
    from documents.models import CLEAN, Document
    from tests.documents import files
    from webapp.extensions import db

    _stack, front, app = behind_front
    headers = bearer(app, "front-links", ["documents:read", "documents:write"])
    content = files.pdf("behind the front")
    uploaded = requests.post(front.url("/v1/documents"), headers=headers, timeout=10,
                             files={"file": ("doc.pdf", content, "application/pdf")})
    assert uploaded.status_code == 201, uploaded.text
    document_id = uploaded.json()["id"]
    with app.app_context():  # no worker in this stack: the verdict is set by hand
        db.session.get(Document, document_id).status = CLEAN
        db.session.commit()
    link = requests.post(front.url(f"/v1/documents/{document_id}/download-url"),
                         headers=headers, timeout=10)
    assert link.status_code == 200, link.text
    assert link.json()["url"].startswith(front.url("/v1/files/"))
    fetched = requests.get(link.json()["url"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == content

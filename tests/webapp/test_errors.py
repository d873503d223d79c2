import json
import re

import pytest
from flask import Blueprint, request
from sqlalchemy import text

from webapp import create_app
from webapp.extensions import db

failing = Blueprint("failing", __name__)


@failing.post("/_test/echo")
def echo():
    return {"size": len(request.get_data())}


@failing.get("/_test/crash")
def crash():
    raise RuntimeError("boom with whsec_supersecretvalue and alice@example.com")


@failing.get("/_test/query")
def query():
    db.session.execute(text("SELECT 1"))
    return {"ok": True}


@pytest.fixture
def app(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1024)
    app.register_blueprint(failing)
    return app


def assert_envelope(response, status, code):
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    return body


def test_unknown_route_gets_a_json_404(client):
    assert_envelope(client.get("/no/such/thing"), 404, "not_found")


def test_wrong_method_gets_a_json_405_with_allow(client):
    response = client.delete("/livez")
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_oversized_body_gets_a_json_413(client):
    assert client.post("/_test/echo", data=b"x" * 1000).get_json() == {"size": 1000}
    assert_envelope(client.post("/_test/echo", data=b"x" * 5000), 413, "payload_too_large")


def test_a_crash_is_a_500_without_stack_trace_and_is_logged_redacted(client, capfd):
    response = client.get("/_test/crash", headers={"X-Request-Id": "req-crash-1"})
    body = assert_envelope(response, 500, "internal_error")
    assert response.headers["X-Request-Id"] == "req-crash-1"
    raw = response.get_data(as_text=True)
    assert "Traceback" not in raw and "boom" not in raw and "whsec_" not in raw
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()
             if line.startswith("{")]
    crash = [line for line in lines if line["message"] == "unhandled error"]
    assert crash and crash[0]["request_id"] == body["error"]["request_id"]
    assert "RuntimeError" in crash[0]["exc_info"]
    assert "whsec_supersecretvalue" not in crash[0]["exc_info"]
    assert "alice@example.com" not in crash[0]["exc_info"]


@pytest.mark.parametrize("incoming", ["has spaces in it", "x" * 200, "bad\u00e9char"])
def test_an_unsafe_request_id_is_replaced(client, incoming):
    response = client.get("/livez", headers={"X-Request-Id": incoming})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_a_sane_request_id_is_echoed(client):
    assert client.get("/livez", headers={"X-Request-Id": "abc-123.4:5"}).headers[
        "X-Request-Id"] == "abc-123.4:5"


def test_database_down_is_a_503_with_retry_after(app_config, redis_url):
    from tests.services import free_port

    app = create_app({**app_config, "DATABASE_URL":
                      f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"})
    app.register_blueprint(failing)
    response = app.test_client().get("/_test/query")
    assert_envelope(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize("path", ["/livez", "/nowhere", "/metrics"])
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"

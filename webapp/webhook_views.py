"""POST /webhooks/<source> (deliveries) and GET /webhooks/<source> (a scheme's handshake,
such as Meta's subscription check). Nothing here knows a provider by name: each
scheme declares its verifier, its handshake and the reply its sender expects."""
from __future__ import annotations

import logging
import os
import time
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask_limiter.util import get_remote_address
from prometheus_client import Counter
from werkzeug.test import Client

from store import tracing
from tasks.app_state import SOURCES_KEY, redis_client, sources
from webapp.config import webhook_sources
from webapp.errors import APIError
from webapp.extensions import db, limiter
from webapp.rate_limits import Budget, OverBudget
from webhooks import stats
from webhooks.ingest import InvalidPayload, store_delivery
from webhooks.schemes import SCHEMES, SignatureError, verify
from webhooks.sources import Source

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

DELIVERIES = Counter("sluice_webhook_deliveries_total", "Webhook deliveries by outcome",
                     ["source", "outcome"])


def _source_name() -> str:
    return (request.view_args or {}).get("source", "")


def _source() -> Source:
    source = sources().get(_source_name())
    if source is None:
        raise APIError(404, "unknown_source", "No webhook source has that name.")
    return source


def _source_limit() -> str:
    return _source().rate_limit  # spent only once the view has found the source


# The provider's quota is spent only by deliveries that passed verification, and a
# forged one spends its sender's per-address budget instead, so forgeries cannot
# starve a provider (webapp/rate_limits.py: one Redis round trip per delivery).
SOURCE_QUOTA = Budget("webhook-source", _source_limit, _source_name)
FORGERY_BUDGET = Budget("webhook-forgery",
                        lambda: current_app.config["WEBHOOK_INVALID_SIGNATURE_LIMIT"],
                        get_remote_address)


def _requested_url() -> str:
    """The URL as the sender requested it, which Twilio signs: scheme and host as the
    app sees them (ProxyFix with TRUSTED_PROXY_COUNT), path and query as sent."""
    environ = request.environ
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path
    if not target.startswith("/"):  # the absolute form a proxy (or a test client) may send
        parts = urlsplit(target)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{request.scheme}://{request.host}{target}"


@bp.post("/webhooks/<source>")
def receive(source: str):
    source = _source()
    if request.content_length is not None and request.content_length > source.max_body:
        raise APIError(413, "payload_too_large", f"The body exceeds {source.max_body} bytes.")
    # A chunked body has no length to check first. werkzeug stops reading at
    # max_content_length and hands back what it read, so a body over the cap would
    # come back cut to it (and a signature over that prefix would verify): read one
    # byte more, and refuse if it came.
    request.max_content_length = source.max_body + 1
    body = request.get_data(cache=True)
    if len(body) > source.max_body:
        raise APIError(413, "payload_too_large", f"The body exceeds {source.max_body} bytes.")
    try:
        verify(source, request.headers, body, time.time(), _requested_url())
    except SignatureError as exc:
        _count_unstored(source, "signature_failed")
        FORGERY_BUDGET.spend()  # 429 instead, once this address has failed too often
        DELIVERIES.labels(source.name, exc.code).inc()
        raise APIError(401, exc.code, str(exc)) from None
    try:
        SOURCE_QUOTA.spend()
    except OverBudget:
        _count_unstored(source, "rate_limited")
        raise
    try:
        # committed on return; raises (503) rather than acknowledge an uncommitted event
        stored = store_delivery(db.state.bind, source, request.headers, body)
    except InvalidPayload as exc:
        DELIVERIES.labels(source.name, exc.code).inc()
        _count_unstored(source, "invalid_payload")
        raise APIError(400, exc.code, str(exc)) from None
    outcome = "duplicate" if stored.duplicate else "accepted"
    DELIVERIES.labels(source.name, outcome).inc()
    tracing.annotate(source=source.name, event_id=stored.event_id)
    if stored.duplicate:
        _count_unstored(source, outcome)
    reply = SCHEMES[source.scheme].reply
    if reply is not None:  # the sender's own acknowledgement, stored or duplicate alike
        return Response(reply.body, status=reply.status, mimetype=reply.mimetype)
    return jsonify(id=stored.event_id, status=outcome), 200 if stored.duplicate else 202


def _count_unstored(source: Source, outcome: str) -> None:
    """For the ops console's last hour and day; accepted ones are counted from the table."""
    stats.count(redis_client(), current_app.config["REDIS_KEY_PREFIX"], source.name,
                outcome)


@bp.get("/webhooks/<source>")
@limiter.limit(lambda: current_app.config["WEBHOOK_INVALID_SIGNATURE_LIMIT"],
               key_func=get_remote_address,
               deduct_when=lambda response: response.status_code == 403)
def verify_subscription(source: str):
    source = _source()
    handshake = SCHEMES[source.scheme].handshake
    answer = handshake(source, request.args) if handshake is not None else None
    if answer is None:
        raise APIError(403, "verification_failed", "The subscription could not be verified.")
    return Response(answer, mimetype="text/plain")


def send_test_delivery(source: Source, url: str | None = None) -> tuple[int, dict]:
    """Sign the scheme's sample event with the source's own secret and send it down the
    real ingest path (verification, quota, storage, the outbox): to `url` over HTTP,
    or else through this app in-process. (HTTP status, JSON answer)."""
    target = url or f"http://localhost/webhooks/{source.name}"
    body, headers = SCHEMES[source.scheme].test_delivery(source, target, time.time())
    if url:
        import requests  # the CLI only: web workers do not load an HTTP client

        answer = requests.post(url, data=body, headers=headers, timeout=10)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, {}
    answer = Client(current_app._get_current_object()).post(target, data=body, headers=headers)
    return answer.status_code, answer.get_json(silent=True) or {}


def init_webhooks(app: Flask) -> None:
    app.extensions[SOURCES_KEY] = webhook_sources(app.config, os.environ)
    app.register_blueprint(bp)

"""POST /webhooks/<source> (deliveries) and GET /webhooks/<source> (a scheme's handshake,
such as Meta's subscription check). Nothing here knows a provider by name: each
scheme declares its verifier, its handshake and the reply its sender expects."""
from __future__ import annotations

import ipaddress
import logging
import os
import time
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask_limiter.util import get_remote_address
from prometheus_client import Counter
from werkzeug.test import Client

from store import tracing
from store.signatures import CannotSign
from tasks.app_state import SOURCES_KEY, redis_client, sources
from webapp.config import webhook_sources
from webapp.errors import APIError
from webapp.extensions import db, limiter
from webapp.rate_limits import Budget, OverBudget
from webhooks import stats
from webhooks.ingest import InvalidPayload, event_values, store_batch
from webhooks.schemes import SCHEMES, SignatureError, split_batch, verify
from webhooks.sources import Source

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)
# What a reply in the sender's own words (Adyen's, Daraja's) cannot say: the stored ids
EVENT_IDS = "Sluice-Event-Ids"

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
@bp.post("/webhooks/<source>/<token>")
def receive(source: str, token: str | None = None):
    found = sources().get(source)
    scheme = SCHEMES[found.scheme] if found is not None else None
    now, url = time.time(), _requested_url()
    # A source authenticated by a token in its URL (M-Pesa's) answers a missing or
    # wrong token exactly as an unknown source, and both spend the forgery budget, so
    # neither the answer nor its timing tells a guesser anything.
    if scheme is None or scheme.token_in_path != (token is not None):
        raise _unknown_source()
    if scheme.token_in_path:
        try:
            verify(found, request.headers, b"", now, url)
        except SignatureError:
            raise _unknown_source() from None
    _check_address(found)
    body = _read_body(found)
    if scheme.split is not None:
        bodies = _verified_items(found, scheme, body, now)
    elif scheme.token_in_path:  # the path token, checked above, was the whole check
        bodies = [body]
    else:
        try:
            verify(found, request.headers, body, now, url)
        except SignatureError as exc:
            raise _refused(found, exc) from None
        bodies = [body]
    try:
        SOURCE_QUOTA.spend()
    except OverBudget:
        _count_unstored(found, "rate_limited")
        raise
    try:
        rows = [event_values(found, request.headers, item) for item in bodies]
    except InvalidPayload as exc:
        DELIVERIES.labels(found.name, exc.code).inc()
        _count_unstored(found, "invalid_payload")
        raise APIError(400, exc.code, str(exc)) from None
    # committed on return; raises (503) rather than acknowledge an uncommitted event
    stored = store_batch(db.state.bind, rows)
    for one in stored:
        outcome = "duplicate" if one.duplicate else "accepted"
        DELIVERIES.labels(found.name, outcome).inc()
        if one.duplicate:
            _count_unstored(found, outcome)
    tracing.annotate(source=found.name, event_id=stored[0].event_id)
    if scheme.reply is not None:  # the sender's own acknowledgement, stored or duplicate
        return Response(scheme.reply.body, status=scheme.reply.status,
                        mimetype=scheme.reply.mimetype,
                        headers={EVENT_IDS: ",".join(str(one.event_id) for one in stored)})
    [one] = stored
    return jsonify(id=one.event_id, status="duplicate" if one.duplicate else "accepted"), \
        200 if one.duplicate else 202


def _unknown_source() -> APIError:
    FORGERY_BUDGET.spend()  # 429 instead, once this address has failed too often
    return APIError(404, "unknown_source", "No webhook source has that name.")


def _check_address(source: Source) -> None:
    """A source that names `allowed_ips` takes deliveries from those networks only (the
    client's address as ProxyFix gives it, trusting TRUSTED_PROXY_COUNT proxies)."""
    if source.allowed_networks and not any(
            ipaddress.ip_address(request.remote_addr or "0.0.0.0") in network
            for network in source.allowed_networks):
        _count_unstored(source, "address_refused")
        DELIVERIES.labels(source.name, "address_not_allowed").inc()
        raise APIError(403, "address_not_allowed",
                       "This source takes no deliveries from this address.")


def _read_body(source: Source) -> bytes:
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
    return body


def _refused(source: Source, error: SignatureError) -> APIError:
    _count_unstored(source, "signature_failed")
    FORGERY_BUDGET.spend()  # 429 instead, once this address has failed too often
    DELIVERIES.labels(source.name, error.code).inc()
    return APIError(401, error.code, str(error))


def _verified_items(source: Source, scheme, body: bytes, now: float) -> list[bytes]:
    """A batch's items that verify; a bad one refuses only itself, and a batch with no
    good item is refused as a whole (401)."""
    try:
        items = split_batch(source, request.headers, body, now)
    except InvalidPayload as exc:
        DELIVERIES.labels(source.name, exc.code).inc()
        _count_unstored(source, "invalid_payload")
        raise APIError(400, exc.code, str(exc)) from None
    errors = [error for _item, error in items if error is not None]
    good = [item for item, error in items if error is None]
    if not good:
        raise _refused(source, errors[0])
    for error in errors:
        _count_unstored(source, "signature_failed")
        DELIVERIES.labels(source.name, error.code).inc()
    return good


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
    or else through this app in-process. (HTTP status, JSON answer: `id` and `status`,
    also for a scheme that answers in its own words). A source with a token in its URL
    is sent to its URL with the token; a `url` given for one must carry it."""
    scheme = SCHEMES[source.scheme]
    target = url or f"http://localhost/webhooks/{source.name}" + (
        f"/{source.secrets[0].decode()}" if scheme.token_in_path else "")
    try:
        body, headers = scheme.test_delivery(source, target, time.time())
    except CannotSign as exc:  # only the provider can sign (PayPal): say how to get one
        return 501, {"error": {"code": "cannot_sign", "message": str(exc)}}
    if url:
        import requests  # the CLI only: web workers do not load an HTTP client

        answer = requests.post(url, data=body, headers=headers, timeout=10,
                               allow_redirects=False)
        status, answer_headers = answer.status_code, answer.headers
        try:
            found = answer.json()
        except ValueError:
            found = {}
    else:
        app = current_app._get_current_object()
        answer = Client(app).post(target, data=body, headers=headers)
        status, answer_headers = answer.status_code, answer.headers
        found = answer.get_json(silent=True)
    if isinstance(found, dict) and ("id" in found or "error" in found):
        return status, found  # Sluice's own JSON
    first = answer_headers.get(EVENT_IDS, "").split(",")[0]  # a reply in the sender's words
    return status, {"id": int(first), "status": "stored"} if first.isdigit() else {}


def init_webhooks(app: Flask) -> None:
    app.extensions[SOURCES_KEY] = webhook_sources(app.config, os.environ)
    app.register_blueprint(bp)

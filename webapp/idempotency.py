"""`Idempotency-Key` on the API's state-changing routes, with Stripe's semantics.

A client that timed out cannot know whether its POST took effect. Sent again with the
same key, it gets the first answer back (`Idempotent-Replayed: true`) and nothing
happens twice:

- keys are scoped to the calling client, and kept IDEMPOTENCY_KEY_HOURS;
- the same key on a different request (method, path, query, body, or a header that
  changes what it does) is 422 `idempotency_key_reused`;
- while the first request runs, another with its key is 409 `idempotency_key_in_use`;
- only a success (2xx) is kept. A 4xx changed nothing, so running it again is as safe
  as replaying it, and the client may correct its request and keep the key; a 5xx is
  not an answer at all.

Uploads fingerprint their body by the SHA-256 the spool computes as it writes the
file, so a key costs no second pass over the bytes and none of them in memory. The
kept answer is sealed at rest by its column (store/sealing.py, under DATA_KEYS, like
every other secret): a destination's creation answers with its signing secret.

One window stays open: a request that commits its work and dies before its answer
is kept leaves the key running; after RUNNING_LEASE a retry runs again.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
from typing import Callable

from flask import Response, current_app, g, request

from store import idempotency
from webapp.errors import APIError
from webapp.extensions import db

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
PATH_KEPT = 500  # idempotency_keys.path
IN_USE_RETRY_AFTER = "1"
# Headers that change what a request does, besides its body. (A multipart body's
# Content-Type carries a boundary each client picks anew: only its media type counts.)
CHANGING_HEADERS = ("Content-Disposition", "Content-Digest", "x-amz-checksum-sha256",
                    "If-Match")
# What a replay repeats of the first answer, besides its status and body.
KEPT_HEADERS = ("Content-Type", "Location", "ETag", "Content-Digest")


def idempotent(body: Callable[[], str] | None = None):
    """Honour an Idempotency-Key on this view (below require_scopes: keys are the
    client's). `body` fingerprints the request body when reading it raw will not do
    (an upload: the spool's digest); by default the body's bytes, JSON canonicalised."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            key = request.headers.get(HEADER)
            if key is None or request.method in ("GET", "HEAD"):  # reads repeat anyway
                return view(*args, **kwargs)
            _check(key)
            fingerprint = _fingerprint(body() if body else _body_fingerprint())
            held = idempotency.claim(
                db.session, g.client.id, key, request.method, _path(), fingerprint,
                dt.timedelta(hours=current_app.config["IDEMPOTENCY_KEY_HOURS"]))
            if isinstance(held, idempotency.Held):
                return _answer_held(held, fingerprint)
            return _run_and_keep(held, view, args, kwargs)
        wrapper.idempotent = True  # tests/webapp/test_idempotency.py checks every route has it
        return wrapper
    return decorator


def _path() -> str:
    """The path as kept (its column's width; the fingerprint has all of it)."""
    return request.path[:PATH_KEPT]


def _check(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise APIError(400, "invalid_idempotency_key",
                       f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters, none of them "
                       "control characters (a UUID is a good key).")


def _body_fingerprint() -> str:
    data = request.get_data(cache=True)
    if request.is_json:
        try:  # the same JSON spelled with other spacing or key order is the same request
            data = json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            pass
    return hashlib.sha256(data).hexdigest()


def _fingerprint(body: str) -> str:
    parts = [request.method, request.path, request.query_string.decode("latin-1"),
             request.mimetype, body]
    parts += [request.headers.get(name, "") for name in CHANGING_HEADERS]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _answer_held(held: idempotency.Held, fingerprint: str) -> Response:
    if held.fingerprint != fingerprint:
        which = (f"a different request: {held.method} {held.path}"
                 if (held.method, held.path) != (request.method, _path())
                 else "this route with a different body, query or headers")
        raise APIError(422, "idempotency_key_reused",
                       f"This key was used for {which}. Use a new key for a new request.")
    if held.response_status is None:
        raise APIError(409, "idempotency_key_in_use",
                       "A request with this key is still running; retry shortly.",
                       {"Retry-After": IN_USE_RETRY_AFTER})
    kept = json.loads(held.response)
    response = Response(base64.b64decode(kept["body"]), status=held.response_status,
                        headers=kept["headers"])
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _run_and_keep(claimed: idempotency.Claimed, view, args, kwargs) -> Response:
    try:
        response = current_app.make_response(view(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - the app's error handlers make the answer
        response = current_app.handle_user_exception(exc)
    if 200 <= response.status_code < 300 and not response.direct_passthrough:
        kept = {"headers": {name: response.headers[name] for name in KEPT_HEADERS
                            if name in response.headers},
                "body": base64.b64encode(response.get_data()).decode()}
        idempotency.finish(db.session, claimed, response.status_code,
                           json.dumps(kept).encode())
    else:
        idempotency.release(db.session, claimed)
    return response

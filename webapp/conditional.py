"""ETags and conditional requests (RFC 9110 section 13) on single resources.

A resource's ETag is strong and derived from its representation: werkzeug's digest of
the JSON body the GET answers. A version column would save hashing a few hundred
bytes, but this service also changes rows with Core UPDATEs, which an ORM version
counter never sees; a stale version would answer 304 for a changed resource, and a
digest of the representation cannot.

- `tagged` answers a GET with its ETag, and 304 to an `If-None-Match` that holds it.
- `check_if_match` guards a write to one resource: 412 if `If-Match` names another
  representation; 428 if REQUIRE_IF_MATCH is set and `If-Match` is missing. The
  caller reads the row locked (FOR UPDATE), so no write slips between check and change.

Lists carry no ETag: a page changes with every new row, and its paging cursor already
says what is new.
"""
from __future__ import annotations

from flask import Response, current_app, request
from werkzeug.http import generate_etag

from webapp.errors import APIError

# A client may keep a tagged answer but must revalidate it before each use; shared
# caches keep nothing (the answers carry personal data).
TAGGED_CACHE_CONTROL = "private, no-cache"


def etag_of(body: dict) -> str:
    """The strong ETag (unquoted) of the JSON representation `body`."""
    return generate_etag(current_app.json.response(body).get_data())


def tagged(body: dict) -> Response:
    """`body` as JSON with its ETag: 304 and no body if the client's If-None-Match has it."""
    response = current_app.json.response(body)
    response.set_etag(generate_etag(response.get_data()))
    response.headers["Cache-Control"] = TAGGED_CACHE_CONTROL
    return response.make_conditional(request)


def check_if_match(current: dict) -> None:
    """Let the write go ahead only if the client saw `current` (the representation its
    GET answers now), as RFC 9110's If-Match asks."""
    if "If-Match" not in request.headers:
        if current_app.config["REQUIRE_IF_MATCH"]:
            raise APIError(428, "precondition_required",
                           "Send If-Match with the ETag of the resource as you last read it.")
        return
    if not request.if_match.contains(etag_of(current)):
        raise APIError(412, "precondition_failed",
                       "The resource changed since the ETag in If-Match was read; read it "
                       "again and decide anew.",
                       {"ETag": f'"{etag_of(current)}"'})

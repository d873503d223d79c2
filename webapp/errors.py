"""One error shape for every 4xx/5xx: {"error": {"code", "message", "request_id"}}."""
from __future__ import annotations

import logging
import re

from flask import Flask, g, jsonify
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem
from werkzeug.exceptions import HTTPException

from documents.storage import StorageUnavailable
from store.db import DATABASE_UNAVAILABLE, is_lock_wait

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER = "5"
# Codes clients key on; others are derived from the HTTP reason phrase.
_CODE_OVERRIDES = {413: "payload_too_large", 429: "rate_limited"}


class APIError(Exception):
    """Raise from a view to answer with the error envelope."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers=None):
    response = jsonify(
        {"error": {"code": code, "message": message, "request_id": g.get("request_id")}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_code(exc: HTTPException) -> str:
    return _CODE_OVERRIDES.get(exc.code) or re.sub(r"\W+", "_", (exc.name or "error").lower())


def handle_api_error(exc: APIError):
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def handle_http_exception(exc: HTTPException):
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    if isinstance(exc, RateLimitExceeded):
        headers.update(rate_limit_headers(exc.limit.limit))
    return error_response(exc.code or 500, _http_code(exc), exc.description or exc.name, headers)


def rate_limit_headers(item: RateLimitItem) -> dict[str, str]:
    # The whole window is an upper bound on the wait, with no extra Redis call.
    return {"Retry-After": str(item.get_expiry()), "X-RateLimit-Limit": str(item.amount),
            "X-RateLimit-Remaining": "0"}


def handle_database_unavailable(exc: Exception):
    # Connection-level failures only: a bad query is a bug and stays a 500.
    if is_lock_wait(exc):  # the database is up: a transaction held a lock too long
        log.warning("database busy: a lock wait timed out")
        return error_response(503, "database_busy",
                              "The database is busy (a lock wait timed out); retry shortly.",
                              {"Retry-After": DATABASE_RETRY_AFTER})
    log.error("database unavailable",
              extra={"error": type(getattr(exc, "orig", None) or exc).__name__})
    return error_response(503, "database_unavailable",
                          "The database is unavailable; retry later.",
                          {"Retry-After": DATABASE_RETRY_AFTER})


def handle_storage_unavailable(exc: Exception):
    log.error("blob storage unavailable", extra={"error": type(exc).__name__})
    return error_response(503, "storage_unavailable",
                          "Document storage is unavailable; retry later.",
                          {"Retry-After": DATABASE_RETRY_AFTER})


def handle_unexpected(exc: Exception):
    # The traceback goes to our (redacted) logs, never to the client.
    log.exception("unhandled error")
    return error_response(500, "internal_error", "An internal error occurred.")


def register_errorhandlers(app: Flask) -> None:
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    for db_error in DATABASE_UNAVAILABLE:
        app.register_error_handler(db_error, handle_database_unavailable)
    app.register_error_handler(StorageUnavailable, handle_storage_unavailable)
    app.register_error_handler(Exception, handle_unexpected)

"""JSON logs on stderr: one object per line, with the request id and nothing secret."""
from __future__ import annotations

import logging
import re
import sys
import traceback
import uuid

from flask import Flask, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

from store import tracing
from store.payloads import describe_error
from store.redaction import redact, redact_value

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


def incoming_request_id() -> str:
    """Accept the caller's id when it is safe to echo and log; otherwise make one."""
    candidate = request.headers.get(REQUEST_ID_HEADER, "")
    return candidate if _SANE_REQUEST_ID.match(candidate) else uuid.uuid4().hex


def current_request_id() -> str | None:
    if has_request_context():
        return g.get("request_id")
    celery = sys.modules.get("celery")  # tasks log under their task id; a process
    if celery is None:                  # that never loaded Celery (the web) runs none
        return None
    task = celery.current_task
    if task and task.request and task.request.id:
        return task.request.id
    return None


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        ids = tracing.log_ids()  # None unless tracing is on and a span is current
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


class RedactionFilter(logging.Filter):
    """Rewrite the message, its extras and any traceback before formatting.

    An exception's text is never logged (except the messages we write ourselves,
    see store.payloads.describe_error): a database error quotes the server's
    DETAIL ("Failing row contains (...)") and an arbitrary exception may quote the
    data it choked on, either of which can be a customer's name or phone number.
    Tracebacks keep their frames and each exception's type.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict) and "exc" in record.args:
            # Celery's task failure and retry lines: "... raised unexpected: %(exc)s"
            record.args = {**record.args, "exc": _withheld(str(record.args["exc"])),
                           "traceback": ""}
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            if record.exc_info[1] is not None:
                record.exc_text = redact(safe_traceback(record.exc_info[1]))
            record.exc_info = None
        data = getattr(record, "data", None)
        if isinstance(data, dict):  # Celery repeats its context as an extra
            record.data = {k: v for k, v in data.items() if k not in ("exc", "traceback")}
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, redact_value(key, value))
        return True


def _withheld(text: str) -> str:
    """An exception's repr cut to its type: "Retry in 3s: DataError('...')" keeps
    "Retry in 3s: DataError"."""
    return _EXCEPTION_ARGUMENTS.sub("", text)


_EXCEPTION_ARGUMENTS = re.compile(r"\((?s:.*)$")


def safe_traceback(error: BaseException) -> str:
    """The frames of every exception in the chain, each described by describe_error."""
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        frames = "".join(traceback.format_tb(error.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{describe_error(error)}")
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return "\n\nwhich came from:\n".join(parts)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time (servers and tests swap it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def json_handler(handler: logging.Handler) -> logging.Handler:
    """`handler`, writing our log lines: redacted JSON with the request id."""
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z"))
    return handler


def configure_logging(app: Flask) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_sluice", False)]:
        root.removeHandler(handler)
    handler = json_handler(StderrHandler())
    handler._sluice = True
    root.addHandler(handler)
    root.setLevel(app.config["LOG_LEVEL"].upper())
    # Alembic announces every plugin it loads at INFO; keep its migration lines only.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # Celery logs two INFO lines per task (received, succeeded). Redacted as JSON
    # they are a large share of the worker's CPU per webhook event (bench/ingest's
    # drain); failures still log (our tasks warn, Celery logs errors at ERROR).
    task_lines = logging.NOTSET if app.config["LOG_TASK_LINES"] else logging.WARNING
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(task_lines)

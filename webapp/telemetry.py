"""OpenTelemetry traces, off unless the standard OTEL_* variables ask for them.

With none of ENABLING set nothing here imports OpenTelemetry, and the request path
pays nothing (store/tracing.py's hooks stay empty). With one set, create_app (the
web, the worker and beat alike) wires:

- a tracer provider from the environment: OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER
  (and _ARG), OTEL_TRACES_EXPORTER = otlp (OTLP over HTTP, OTEL_EXPORTER_OTLP_*)
  and/or console, for local debugging;
- Flask (an incoming `traceparent` is honoured), every SQL statement, our Redis
  client, and Celery in each pool process (CeleryInstrumentor, at worker_process_init);
- the outbox hooks, so a task's span continues the trace of the request that
  wrote its outbox row, however late the relay publishes it;
- trace_id and span_id on every JSON log line.

Spans carry ids (source, event, document, import, job), never payload values: URL
attributes lose their query string and any signed download token, SQL statements
come without parameters, Redis commands without arguments (the instrumentation's
own sanitising).
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Mapping

from flask import Flask

from store import tracing

ENABLING = ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER")
# The kwargs of our tasks that identify what they work on, as span attributes.
TASK_FACTS = ("event_id", "document_id", "import_id", "media_id", "upload_id", "name")
URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.path", "url.query")
# Paths that carry a secret: a download link's signed token, and a webhook source's
# path token (M-Pesa's /webhooks/<source>/<token>)
_SECRET_PATHS = re.compile(r"^(/v1/files/|/webhooks/[^/?]+/)[^/?]+")
_state: dict[str, Any] = {}


def enabled(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name) for name in ENABLING)


def init_tracing(app: Flask) -> None:
    if not enabled(os.environ):
        return
    from webapp.config import ConfigError

    try:
        from opentelemetry import trace  # noqa: F401
        from opentelemetry.sdk.trace import TracerProvider  # noqa: F401
    except ImportError:
        raise ConfigError("OTEL_* is set but OpenTelemetry is not installed: "
                          "pip install 'sluice[otel]'") from None
    provider = _provider()
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    from tasks.app_state import database, redis_client

    FlaskInstrumentor().instrument_app(app, tracer_provider=provider,
                                       request_hook=_scrub_request)
    _trace_sql(database(app).engine)
    RedisInstrumentor.instrument_client(redis_client(app), tracer_provider=provider)
    _instrument_celery_in_pool_processes(provider)


def _provider():
    """One tracer provider per process (create_app may run more than once)."""
    if "provider" in _state:
        return _state["provider"]
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "sluice"}))
    names = [n.strip().lower() for n in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp")
             .split(",") if n.strip()]
    for name in names:
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()
        else:
            from webapp.config import ConfigError
            raise ConfigError(f"OTEL_TRACES_EXPORTER: {name!r} is not otlp or console")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    _state["tracer"] = provider.get_tracer("sluice")
    tracing.HOOKS.capture = _capture
    tracing.HOOKS.publishing = _publishing
    tracing.HOOKS.annotate = _annotate
    tracing.HOOKS.log_ids = _log_ids
    return provider


def _trace_sql(engine) -> None:
    """A client span per statement, its text without parameters.

    Written here instead of opentelemetry-instrumentation-sqlalchemy, which declares
    sqlalchemy < 2.1 and refuses to run on 2.1; forced past that check it imports
    sqlalchemy.ext.asyncio, which on 2.1 needs greenlet, a dependency nothing else
    here has. These two engine events are all it would do for a synchronous engine.
    """
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode
    from sqlalchemy import event

    tracer = _state["tracer"]
    database = engine.url.database or ""
    attributes = {"db.system": engine.dialect.name, "db.name": database}

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        context._sluice_span = tracer.start_span(
            f"{operation} {database}".strip(), kind=trace.SpanKind.CLIENT,
            attributes={**attributes, "db.statement": statement[:2000]})

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):
        span = getattr(context, "_sluice_span", None)
        if span is not None:
            span.end()

    @event.listens_for(engine, "handle_error")
    def _failed(exception_context):
        span = getattr(exception_context.execution_context, "_sluice_span", None)
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, type(exception_context.original_exception)
                                   .__name__))
            span.end()


def _scrub_request(span, environ) -> None:
    """URL attributes without the query string (Meta's verify token rides in it),
    without a download link's signed token and without a webhook path token."""
    if not span.is_recording():
        return
    path = _SECRET_PATHS.sub(r"\1{token}", environ.get("PATH_INFO", ""))
    for name in URL_ATTRIBUTES:
        span.set_attribute(name, "" if name == "url.query" else path)


def _instrument_celery_in_pool_processes(provider) -> None:
    if _state.get("celery"):
        return
    _state["celery"] = True
    from celery.signals import task_prerun, worker_process_init

    def instrument(**_kwargs) -> None:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=provider)
        # Connected after the instrumentation's own task_prerun, so the task's span
        # is current when this runs.
        task_prerun.connect(_task_facts, weak=False)

    worker_process_init.connect(instrument, weak=False)


def _task_facts(task=None, kwargs=None, **_ignored) -> None:
    facts = {name: (kwargs or {}).get(name) for name in TASK_FACTS}
    _annotate({("job" if k == "name" else k): v for k, v in facts.items() if v is not None})


def _capture() -> dict[str, str] | None:
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier or None


@contextlib.contextmanager
def _publishing(carrier: Mapping[str, str], task: str):
    from opentelemetry import context, trace
    from opentelemetry.propagate import extract, inject

    parent = extract(dict(carrier)) if carrier else context.get_current()
    with _state["tracer"].start_as_current_span(
            f"publish {task}", context=parent, kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.destination.name": task.split(".")[1]
                        if task.count(".") >= 2 else task}):
        headers: dict[str, str] = {}
        inject(headers)
        yield headers


def _annotate(facts: dict[str, Any]) -> None:
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        for name, value in facts.items():
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                span.set_attribute(f"sluice.{name}", value)


def _log_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")

"""Prometheus metrics, correct across gunicorn workers.

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set, as gunicorn.conf.py does)
each worker writes its own files and a scrape aggregates them all; otherwise the
process's default registry is served.
"""
from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

bp = Blueprint("metrics", __name__)

HTTP_REQUESTS = Counter("sluice_http_requests_total", "HTTP requests answered",
                        ["method", "endpoint", "status"])
HTTP_LATENCY = Histogram("sluice_http_request_duration_seconds", "HTTP request latency",
                         ["method", "endpoint"],
                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))


BACKLOG_KEY = "sluice.backlog_metrics"


@bp.get("/metrics")
def metrics():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    # Counters from every process, then the backlog gauges measured now (cached).
    backlog = CollectorRegistry(auto_describe=False)
    backlog.register(current_app.extensions[BACKLOG_KEY])
    # content_type, not mimetype: CONTENT_TYPE_LATEST carries its charset already, and
    # Flask would append a second one.
    return Response(generate_latest(registry) + generate_latest(backlog),
                    content_type=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.started_at = time.perf_counter()


def _observe(response):
    # The endpoint name, not the path: paths can carry ids and signed tokens.
    endpoint = request.endpoint or "unmatched"
    HTTP_REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
    if "started_at" in g:
        HTTP_LATENCY.labels(request.method, endpoint).observe(
            time.perf_counter() - g.started_at)
    return response


def register_metrics(app: Flask) -> None:
    from webapp.backlog_metrics import BacklogCollector

    app.extensions[BACKLOG_KEY] = BacklogCollector(app)
    app.before_request(_start_timer)
    app.after_request(_observe)

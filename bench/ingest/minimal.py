"""Ceilings for the ingest endpoint: bare Flask apps, on the same gunicorn config as
the baseline, that do only what the issue requires of every delivery.

- `rate_limited`: the rate limit, with flask-limiter on Redis and the same strategy
  as webapp/ (one sliding-window-counter hit per request).
- `committed`: the delivery made durable before it is answered (docs/design.md: never
  a 2xx for an event not committed): one INSERT into `minimal_events` (made by
  bench/ingest/run.py), in autocommit, by psycopg on a connection kept per thread.
- `limited_and_committed`: both, and nothing else: no signature check, no outbox
  row, no publish, no logging, no metrics.
- `limited_committed_published`: both, and the hand-off every accepted delivery needs
  too: one Celery `send_task` to the broker (Sluice's own transport, retry off), as
  the after-commit publish does. Still no signature check, outbox row, ORM, logging
  or metrics.

The ingest endpoint does all of that and more, so it cannot be faster than these.
"""
from __future__ import annotations

import json
import os
import threading

import psycopg
from flask import Flask, jsonify, request
from flask_limiter import Limiter

LIMIT = "100000000/minute"
_connections = threading.local()


def connection() -> psycopg.Connection:
    if getattr(_connections, "current", None) is None:
        url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
        _connections.current = psycopg.connect(url, autocommit=True)
    return _connections.current


def accept():
    request.get_data()
    return jsonify(status="accepted"), 202


def commit():
    body = request.get_data()
    event_key = json.loads(body).get("id")
    if not event_key:  # the bench's readiness probe
        return jsonify(error="no event id"), 400
    inserted = connection().execute(
        "INSERT INTO minimal_events (event_key, body) VALUES (%s, %s) "
        "ON CONFLICT (event_key) DO NOTHING RETURNING event_key",
        (event_key, body)).fetchone()
    return jsonify(status="accepted" if inserted else "duplicate"), 202 if inserted else 200


_celery = {}
# gunicorn's threads answer the first requests together: one of them builds the app
# (Celery imported by several threads at once was a half-initialised module)
_celery_lock = threading.Lock()


def publish_too():
    """commit(), then one Celery publish of the event, as Sluice's web publishes it."""
    answer = commit()
    if answer[1] == 202:
        with _celery_lock:
            celery = _celery.get("app")
            if celery is None:
                from celery import Celery

                from tasks.broker import transport_for
                url = os.environ["REDIS_URL"]
                celery = _celery["app"] = Celery("ceiling", broker=url)
                celery.conf.update(broker_transport=transport_for(url),
                                   task_serializer="json", broker_connection_timeout=2)
        celery.send_task("sluice.ping", kwargs={"token": "ceiling"}, queue="bench-ceiling",
                         retry=False)
    return answer


def minimal_app(name: str, view, rate_limit: bool) -> Flask:
    app = Flask(name)
    if rate_limit:
        limiter = Limiter(lambda: "stripe", app=app, storage_uri=os.environ.get("REDIS_URL"),
                          strategy="sliding-window-counter", key_prefix=f"bench-{name}")
        view = limiter.limit(LIMIT)(view)
    app.post("/webhooks/stripe")(view)
    return app


rate_limited = minimal_app("rate_limited", accept, rate_limit=True)
committed = minimal_app("committed", commit, rate_limit=False)
limited_and_committed = minimal_app("limited_and_committed", commit, rate_limit=True)
limited_committed_published = minimal_app("limited_committed_published", publish_too,
                                          rate_limit=True)

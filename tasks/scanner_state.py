"""What the workers' scanner says, for the web: clamd is the workers' dependency.

Web hosts need no clamd, so they cannot ask it whether it is up or how old its
signatures are. Every worker's gauge thread (`tasks.queue_gauge`) asks its own
CLAMD_URL each QUEUE_DEPTH_INTERVAL and keeps the answer in Redis for a few
intervals, as it does the queue depths; the console's overview and the
`sluice_clamd_signatures_age_seconds` gauge read it from there. When no worker has
reported lately the state is `unknown`.

This module imports neither Celery nor kombu; the web imports it.
"""
from __future__ import annotations

import json
import logging
import time

import redis

log = logging.getLogger(__name__)

KEY = "scanner"
INTERVALS_KEPT = 3
UNKNOWN = {"status": "unknown",
           "detail": "no worker has reported on its scanner lately (is a worker running?)"}


def measure(clamd_url: str | None, timeout: float) -> dict:
    """The worker's scanner: ok with clamd's VERSION reply, down, or missing."""
    if not clamd_url:
        return {"status": "missing",
                "detail": "CLAMD_URL is not set on the workers: documents stay pending_scan"}
    from documents.scanner import client_from_url  # the worker's own dependency

    try:
        return {"status": "ok", "version": client_from_url(clamd_url, timeout=timeout).version()}
    except Exception as exc:  # clamd away, or answering nonsense
        return {"status": "down", "error": type(exc).__name__}


def record(client: redis.Redis, prefix: str, state: dict, interval: float) -> None:
    client.set(prefix + KEY, json.dumps({**state, "at": time.time()}),
               px=int(1000 * max(interval * INTERVALS_KEPT, 1)))


def recorded(client: redis.Redis, prefix: str) -> dict:
    """What a worker last said of its scanner (with `version` when it answered), or
    UNKNOWN when none has lately or Redis does not answer."""
    try:
        raw = client.get(prefix + KEY)
    except redis.RedisError:
        log.warning("scanner state unavailable: Redis did not answer")
        return dict(UNKNOWN)
    return json.loads(raw) if raw else dict(UNKNOWN)

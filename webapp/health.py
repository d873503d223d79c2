"""Probes: /livez (process up), /startupz (config + schema), /readyz (dependencies).

/livez touches nothing. /readyz checks what a web process needs (the database, Redis,
the blob store; scanning is the workers'), concurrently, in a few threads of its own,
under one deadline, HEALTH_CHECK_TIMEOUT: a check still running at the deadline reads
as down ("Timeout"). A check that hangs keeps its one thread, and later probes read
that same check rather than start another. Once a component has timed out, probes
stop waiting for it: they answer "Timeout" at once while its next check runs in the
background, and the first probe after that check ends reads its result. So a store
that stops answering costs one probe the deadline, once, and no request thread after
(probes that each waited out the deadline again held all four of a web worker's
threads, and /livez queued behind them for 0.9 s). The result is kept for
READINESS_CACHE_SECONDS, so a probe storm costs one round of checks per second.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, wait
from typing import Callable

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from store.db import reads_done, reads_only
from tasks import scanner_state
from tasks.app_state import redis_client, storage
from webapp.extensions import db
from webapp.migrate import database_heads, script_heads

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/livez")
def livez():
    return jsonify(status="ok")


@bp.get("/startupz")
def startupz():
    try:
        current, expected = database_heads(db.session.connection()), script_heads()
    except Exception as exc:
        return _probe_failed("database", exc)
    finally:
        db.session.rollback()
    if current != expected:
        return jsonify(status="down", components={"migrations": {
            "status": "behind", "current": sorted(current), "expected": sorted(expected)}}), 503
    return jsonify(status="ok", components={"migrations": {"status": "ok",
                                                           "current": sorted(current)}})


READINESS_CACHE_SECONDS = 1.0
PROBE_KEY = "sluice.readiness"


class Probe:
    """One app's checks: each runs in the probe's own threads, one at a time at most."""

    def __init__(self, app: Flask, checks: dict[str, Callable[[], dict]]):
        self.app, self.checks = app, checks
        self._lock = threading.Lock()
        self._running: dict[str, tuple[float, Future]] = {}  # name -> (started, check)
        self._cached: tuple[float, dict] | None = None
        self._last: dict[str, dict] = {}  # what each component last reported

    def results(self, timeout: float) -> dict[str, dict]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < READINESS_CACHE_SECONDS:
                return self._cached[1]
            futures, deadline = {}, time.monotonic()
            for name, check in self.checks.items():
                running = self._running.get(name)
                if running is None or running[1].done():
                    running = self._running[name] = (time.monotonic(), self._start(name, check))
                futures[name] = running[1]
                if self._last.get(name) != TIMED_OUT:  # a timed-out one is not waited for
                    deadline = max(deadline, running[0] + timeout)
        wait([f for name, f in futures.items() if self._last.get(name) != TIMED_OUT],
             timeout=max(0.0, deadline - time.monotonic()))
        results = {name: future.result() if future.done() else _timed_out(name)
                   for name, future in futures.items()}
        with self._lock:
            self._cached = (time.monotonic(), results)
            self._last.update(results)
        return results

    def _start(self, name: str, check: Callable[[], dict]) -> Future:
        # A daemon thread, not an executor's: a check hung on a dead peer must not hold
        # up the process's exit (an executor's threads are joined at exit).
        future: Future = Future()
        threading.Thread(target=lambda: future.set_result(self._run(name, check)),
                         name=f"readiness-{name}", daemon=True).start()
        return future

    def _run(self, name: str, check: Callable[[], dict]) -> dict:
        with self.app.app_context():
            token = reads_only()  # a probe never takes SQLite's write lock
            try:
                return check()
            except Exception as exc:  # a check reports its own failures; this is a bug
                return _down(name, exc)
            finally:
                reads_done(token)


TIMED_OUT = {"status": "down", "error": "Timeout"}


def _timed_out(name: str) -> dict:
    log.warning("readiness check timed out", extra={"component": name})
    return dict(TIMED_OUT)


def _probe(name: str, checks: dict[str, Callable[[], dict]]) -> Probe:
    app = current_app._get_current_object()
    probes = app.extensions.setdefault(PROBE_KEY, {})
    if name not in probes:
        probes[name] = Probe(app, checks)
    return probes[name]


def readiness() -> dict[str, dict]:
    """What this web process needs, each with its state."""
    return _probe("readyz", {"database": _check_database, "redis": _check_redis,
                             "storage": _check_storage}).results(
        current_app.config["HEALTH_CHECK_TIMEOUT"])


def components() -> dict[str, dict]:
    """Every dependency's state as the console's overview shows it: what /readyz checks,
    and the scanner and OCR as the workers last reported them (a state, never a version)."""
    return {**readiness(), **workers_reported()}


def workers_reported() -> dict[str, dict]:
    """clamd and OCR as the workers last reported them (tasks/scanner_state.py)."""
    prefix, client = current_app.config["REDIS_KEY_PREFIX"], redis_client()
    return {name: {key: value for key, value in scanner_state.recorded(client, prefix, key_)
                   .items() if key in ("status", "detail", "error")}
            for name, key_ in (("clamd", scanner_state.KEY), ("ocr", scanner_state.OCR_KEY))}


@bp.get("/readyz")
def readyz():
    components_ = readiness()
    if components_["database"]["status"] != "ok":
        status, code = "down", 503
    elif all(c["status"] == "ok" for c in components_.values()):
        status, code = "ok", 200
    else:
        status, code = "degraded", 200  # webhooks are still accepted without Redis or a store
    # What the workers reported of their own dependencies, for information: a web
    # process is ready without them (scanning and reading documents are the workers').
    workers = workers_reported() if components_["redis"]["status"] == "ok" else {}
    return jsonify(status=status, components=components_, workers=workers), code


def _probe_failed(component: str, exc: Exception):
    return jsonify(status="down", components={
        component: {"status": "down", "error": type(exc).__name__}}), 503


def _check_database() -> dict:
    try:
        db.session.execute(text("SELECT 1"))
        return {"status": "ok"}
    except Exception as exc:
        return _down("database", exc)
    finally:
        db.session.rollback()


def _check_redis() -> dict:
    try:
        redis_client().ping()
        return {"status": "ok"}
    except Exception as exc:
        return _down("redis", exc)


def _check_storage() -> dict:
    try:
        blobs = storage()
        blobs.check()
        return {"status": "ok", "backend": blobs.name}
    except Exception as exc:
        return _down("storage", exc)


def _down(component: str, exc: Exception) -> dict:
    log.warning("readiness check failed",
                extra={"component": component, "error": type(exc).__name__})
    return {"status": "down", "error": type(exc).__name__}

"""What the overview shows, gathered from the domain packages and Redis.

Kept for OPS_OVERVIEW_CACHE_SECONDS in each web process, so that operators leaving
the page open (it refreshes itself) cannot turn into load on the database.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from flask import current_app

from cron.models import FAILED as RUN_FAILED
from cron.models import TIMED_OUT
from documents.models import MISSING_BLOB, SCAN_ERROR
from tasks.app_state import redis_client
from tasks.app_state import sources as configured_sources
from webapp import snapshot
from webapp.extensions import db
from webapp.health import components
from webhooks import stats
from webhooks.models import DEAD
from webhooks.operations import list_media
from whatsapp.models import MEDIA_FAILED

_cache: dict[int, tuple[float, dict]] = {}
_cache_lock = threading.Lock()
OUTBOX_STUCK_SECONDS = 300
UNPROCESSED_STUCK_SECONDS = 600


@dataclasses.dataclass(frozen=True)
class Flag:
    """Something needing attention, and the page that fixes it."""
    message: str
    endpoint: str
    args: dict


def gather() -> dict[str, Any]:
    key = id(current_app._get_current_object())
    ttl = current_app.config["OPS_OVERVIEW_CACHE_SECONDS"]
    with _cache_lock:
        cached = _cache.get(key)
        if cached and time.monotonic() - cached[0] < ttl:
            return cached[1]
    data = _gather()
    with _cache_lock:
        _cache[key] = (time.monotonic(), data)
    return data


def forget() -> None:
    """After an action: the next overview reads afresh."""
    with _cache_lock:
        _cache.pop(id(current_app._get_current_object()), None)


def _gather() -> dict[str, Any]:
    session, client = db.session, redis_client()
    sources = configured_sources()
    now = snapshot.take(session, client, current_app.config, sources)
    stored = stats.stored(session, now.now)
    unstored = stats.unstored(client, current_app.config["REDIS_KEY_PREFIX"], sources)
    deliveries = {name: {window: {**stored.get(name, {}).get(window, {}),
                                  **unstored[name][window]} for window in stats.WINDOWS}
                  for name in sources}
    overview = {
        "now": now.now, "deliveries": deliveries, "components": components(),
        "pending_scan_after": current_app.config["REDRIVE_AFTER"],
        "outbox": {"count": now.outbox_unpublished, "oldest_age": now.age(now.outbox_oldest)},
        "oldest_unprocessed_age": now.age(now.oldest_unprocessed),
        "queues": now.queues,
        "documents": now.documents,
        "oldest_pending_scan_age": now.age(now.oldest_pending_scan),
        "imports": now.imports,
        "jobs": now.jobs,
        "failed_media": len(list_media(session, status=MEDIA_FAILED, limit=100)),
        "destinations": now.destinations,
    }
    overview["flags"] = _flags(overview)
    return overview


def _flags(o: dict[str, Any]) -> list[Flag]:
    flags = []
    dead = sum(w["day"].get(DEAD, 0) for w in o["deliveries"].values())
    if dead:
        flags.append(Flag(f"{dead} dead event(s) in the last day", "ops.events",
                          {"status": DEAD}))
    if (o["outbox"]["oldest_age"] or 0) > OUTBOX_STUCK_SECONDS:
        flags.append(Flag("the outbox has rows older than 5 minutes: is the broker up?",
                          "ops.jobs", {}))
    if (o["oldest_unprocessed_age"] or 0) > UNPROCESSED_STUCK_SECONDS:
        flags.append(Flag("an event has waited more than 10 minutes for its handler",
                          "ops.events", {"status": "received"}))
    if o["documents"][MISSING_BLOB]:
        flags.append(Flag(f"{o['documents'][MISSING_BLOB]} document(s) lost their bytes in the "
                          "store: restore them, then run flask storage verify",
                          "ops.documents", {"status": MISSING_BLOB}))
    if o["documents"][SCAN_ERROR]:
        flags.append(Flag(f"{o['documents'][SCAN_ERROR]} document(s) could not be scanned",
                          "ops.documents", {"status": SCAN_ERROR}))
    for name, state in o["components"].items():
        if state["status"] == "missing" and name == "clamd":
            flags.append(Flag("no virus scanner (CLAMD_URL is not set): documents wait in "
                              "pending_scan until one is configured", "ops.documents",
                              {"status": "pending_scan"}))
        elif state["status"] != "ok":
            why = state.get("error") or state.get("detail") or "?"
            flags.append(Flag(f"{name} is {state['status']} ({why})", "ops.overview", {}))
    if (o["oldest_pending_scan_age"] or 0) > o["pending_scan_after"]:
        flags.append(Flag(f"documents have waited more than {o['pending_scan_after'] // 60} "
                          "minutes for a scan: Rescan all pending", "ops.documents",
                          {"status": "pending_scan"}))
    for job in o["jobs"]:
        if job.last is not None and job.last.outcome in (RUN_FAILED, TIMED_OUT):
            flags.append(Flag(f"job {job.name}'s last run {job.last.outcome}",
                              "ops.job", {"name": job.name}))
    if o["failed_media"]:
        flags.append(Flag(f"{o['failed_media']} WhatsApp media item(s) did not arrive",
                          "ops.media", {"status": MEDIA_FAILED}))
    for destination_id, state, _paused, figures in o["destinations"]:
        if state != "active":
            flags.append(Flag(f"destination {destination_id} is {state}: {figures.backlog} "
                              "deliveries wait", "ops.destination",
                              {"destination_id": destination_id}))
        elif figures.failed:
            flags.append(Flag(f"destination {destination_id} has {figures.failed} failed "
                              "deliveries: Recover", "ops.destination",
                              {"destination_id": destination_id, "status": "failed"}))
    return flags

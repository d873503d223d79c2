"""One attempt at one delivery: claim it, sign it, POST it, record what happened.

The request is Standard Webhooks': the event's envelope as JSON, `webhook-id` (the
event's public id, the same on every retry, so a receiver can drop a repeat),
`webhook-timestamp`, and `webhook-signature`, signed by the `standardwebhooks`
package itself with each secret in force (two, space-separated, during a rotation).
It goes out under the SSRF rules of documents/fetch.py (the address checked on the
connected socket, no redirect followed), with DELIVERY_TIMEOUT for connecting and
for each read, and at most RESPONSE_CAP bytes of the answer read; an excerpt of it
is kept, redacted, for diagnosis.

A 2xx is success. Anything else schedules the next attempt from
DELIVERY_RETRY_SCHEDULE (seconds, ±10 % jitter), or fails the delivery for good after
the last one, and counts against the destination's breaker:
DESTINATION_FAILURE_THRESHOLD failures in a row open it (`failing`), a success closes
it, and DESTINATION_DISABLE_AFTER of continuous failure disables the destination.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import random
import threading
import time
from importlib import metadata

import requests
from prometheus_client import Counter, Histogram
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from deliveries.destinations import close_breaker, policy_for, signing_secrets
from deliveries.models import (
    ACTIVE,
    DISABLED,
    FAILED,
    FAILING,
    PENDING,
    QUEUED,
    SENDING,
    SUCCEEDED,
    Delivery,
    DeliveryAttempt,
    Destination,
    parse_schedule,
)
from documents.fetch import FetchFailed, FetchRefused, post, session_for
from store import audit
from store.db import utcnow
from store.events import Event
from store.payloads import free_text
from store.redaction import redact

log = logging.getLogger(__name__)

RESPONSE_CAP = 64 * 1024     # bytes of an answer read, at most
EXCERPT_KEPT = 2048          # characters of it kept (redacted) on the attempt
ACTOR = "system:deliveries"

DELIVERED = Counter("sluice_deliveries_total", "Delivery attempts by destination and outcome",
                    ["destination", "outcome"])
LATENCY = Histogram("sluice_delivery_duration_seconds",
                    "Time from the request to the destination's answer", ["destination"],
                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30))
BREAKER = Counter("sluice_destination_state_changes_total",
                  "Destinations' breaker moving between states", ["to"])


def _user_agent() -> str:
    try:
        return f"Sluice/{metadata.version('sluice')}"
    except metadata.PackageNotFoundError:
        return "Sluice"


USER_AGENT = _user_agent()


@dataclasses.dataclass(frozen=True)
class SendSettings:
    timeout: float = 15.0
    schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000, 86400, 86400)
    failure_threshold: int = 10
    probe_interval: float = 60.0
    disable_after: float = 5 * 86400

    @classmethod
    def from_config(cls, config) -> SendSettings:
        return cls(timeout=config["DELIVERY_TIMEOUT"],
                   schedule=parse_schedule(config["DELIVERY_RETRY_SCHEDULE"]),
                   failure_threshold=config["DESTINATION_FAILURE_THRESHOLD"],
                   probe_interval=config["DESTINATION_PROBE_INTERVAL"],
                   disable_after=config["DESTINATION_DISABLE_AFTER"])


@dataclasses.dataclass(frozen=True)
class Attempt:
    delivery_id: int
    destination_id: int
    succeeded: bool
    status_code: int | None
    latency: float
    error: str | None
    final: bool              # succeeded, or failed for good


class HttpSessions:
    """One requests.Session per destination and URL rules, per process: a receiver's
    connections are kept alive between deliveries."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sessions: dict[tuple, requests.Session] = {}

    def for_destination(self, destination: Destination, timeout: float):
        policy = policy_for(destination, timeout, timeout)
        key = (destination.id, destination.allow_http, tuple(destination.allowed_networks or ()),
               timeout)
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                found = self._sessions[key] = session_for(policy)
        return found, policy


def claim(session: Session, delivery_id: int) -> tuple[int, int, int] | None:
    """Take a queued delivery for sending, once: (destination id, event id, attempt
    number), or None if it is not queued (sent already, or handed out again)."""
    row = session.execute(
        update(Delivery).where(Delivery.id == delivery_id, Delivery.status == QUEUED)
        .values(status=SENDING, attempts=Delivery.attempts + 1, enqueued_at=utcnow())
        .returning(Delivery.destination_id, Delivery.event_id, Delivery.attempts)).first()
    return tuple(row) if row else None


def body_of(event: Event) -> bytes:
    return json.dumps(event.envelope(), separators=(",", ":"), ensure_ascii=False).encode()


def headers_for(destination: Destination, event: Event, body: bytes,
                now: dt.datetime) -> dict[str, str]:
    signatures = " ".join(Webhook(secret).sign(event.public_id, now, body)
                          for secret in signing_secrets(destination, now))
    return {"webhook-id": event.public_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signatures, "content-type": "application/json",
            "user-agent": USER_AGENT}


def deliver(session: Session, delivery_id: int, settings: SendSettings,
            http: HttpSessions) -> Attempt | None:
    """Make one attempt at a queued delivery and record it; None if it was not queued."""
    claimed = claim(session, delivery_id)
    session.commit()  # the claim stands even if this process dies mid-send
    if claimed is None:
        return None
    destination_id, event_id, attempt_number = claimed
    destination = session.get(Destination, destination_id)
    event = session.get(Event, event_id)
    if destination is None:
        return None  # deleted meanwhile, its deliveries with it
    now = utcnow()
    if event is None:  # purged by retention before it could be sent
        return _record(session, delivery_id, destination_id, attempt_number, settings,
                       ok=False, status=None, latency=0.0, error="event_expired",
                       excerpt=b"", give_up=True)
    body = body_of(event)
    headers = headers_for(destination, event, body, now)
    http_session, policy = http.for_destination(destination, settings.timeout)
    url = destination.url
    session.commit()  # no connection held while the receiver takes its time
    started = time.monotonic()
    status, excerpt, error = None, b"", None
    try:
        status, excerpt = post(http_session, policy, url, body, headers, RESPONSE_CAP)
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except FetchRefused as refused:
        error = f"refused: {refused.code}"
    except FetchFailed as failed:
        status, error = failed.status, str(failed)
    latency = time.monotonic() - started
    return _record(session, delivery_id, destination_id, attempt_number, settings,
                   ok=error is None, status=status, latency=latency, error=error,
                   excerpt=excerpt)


def _record(session: Session, delivery_id: int, destination_id: int, attempt_number: int,
            settings: SendSettings, *, ok: bool, status: int | None, latency: float,
            error: str | None, excerpt: bytes, give_up: bool = False) -> Attempt:
    now = utcnow()
    kept = free_text(redact(excerpt.decode("utf-8", "replace")), EXCERPT_KEPT) if excerpt \
        else None
    session.execute(insert(DeliveryAttempt.__table__).values(
        delivery_id=delivery_id, destination_id=destination_id, attempted_at=now,
        status_code=status, latency=latency, succeeded=ok, error=error, response_excerpt=kept))
    final = ok or give_up or attempt_number > len(settings.schedule)
    values: dict = {"last_status_code": status, "last_error": error}
    if ok:
        values.update(status=SUCCEEDED, finished_at=now)
    elif final:
        values.update(status=FAILED, finished_at=now)
    else:
        delay = settings.schedule[attempt_number - 1] * random.uniform(0.9, 1.1)
        values.update(status=PENDING, next_attempt_at=now + dt.timedelta(seconds=delay))
    session.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == SENDING)
                    .values(**values))
    _move_breaker(session, destination_id, ok, error, settings, now)
    session.commit()
    label = str(destination_id)
    DELIVERED.labels(label, "succeeded" if ok else ("failed" if final else "retrying")).inc()
    LATENCY.labels(label).observe(latency)
    return Attempt(delivery_id, destination_id, ok, status, latency, error, final)


def _move_breaker(session: Session, destination_id: int, ok: bool, error: str | None,
                  settings: SendSettings, now: dt.datetime) -> None:
    query = select(Destination).where(Destination.id == destination_id)
    destination = session.scalar(query)
    if destination is None or (ok and destination.state == ACTIVE
                               and not destination.consecutive_failures):
        return  # the common case takes no lock on the destination's row
    destination = session.scalar(query.with_for_update().execution_options(
        populate_existing=True))
    if destination is None:
        return
    was = destination.state
    if ok:
        if destination.consecutive_failures or was != ACTIVE:
            close_breaker(destination)
    else:
        destination.consecutive_failures += 1
        destination.last_error = (error or "")[:500]
        if was == ACTIVE and destination.consecutive_failures >= settings.failure_threshold:
            destination.state, destination.failing_since = FAILING, now
            destination.next_probe_at = now + dt.timedelta(seconds=settings.probe_interval)
        elif was == FAILING and destination.failing_since and \
                (now - destination.failing_since).total_seconds() >= settings.disable_after:
            destination.state = DISABLED
    if destination.state != was:
        BREAKER.labels(destination.state).inc()
        audit.record(session, ACTOR, f"destination.{destination.state}", "destination",
                     destination.id, {"from": was, "consecutive_failures":
                                      destination.consecutive_failures, "last_error": error})
        log.warning("destination state changed", extra={
            "destination_id": destination.id, "from": was, "to": destination.state})

"""One attempt at one delivery: claim it, sign it, POST it, record what happened.

The request is Standard Webhooks': the event's envelope as JSON, `webhook-id` (the
event's public id, the same on every retry, so a receiver can drop a repeat),
`webhook-timestamp`, and `webhook-signature`, signed by the `standardwebhooks`
package itself with each secret in force (two, space-separated, during a rotation).
It goes out under the SSRF rules of store/fetch.py (the address checked on the
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
from sqlalchemy import bindparam, insert, select, update
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
from store import audit
from store.db import utcnow
from store.events import Event, envelope
from store.fetch import FetchFailed, FetchRefused, post, session_for
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
    chain_seconds: float = 5.0

    @classmethod
    def from_config(cls, config) -> SendSettings:
        return cls(timeout=config["DELIVERY_TIMEOUT"],
                   schedule=parse_schedule(config["DELIVERY_RETRY_SCHEDULE"]),
                   failure_threshold=config["DESTINATION_FAILURE_THRESHOLD"],
                   probe_interval=config["DESTINATION_PROBE_INTERVAL"],
                   disable_after=config["DESTINATION_DISABLE_AFTER"],
                   chain_seconds=config["DELIVERY_CHAIN_SECONDS"])


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


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A delivery taken for sending, with what its request is made of."""
    delivery_id: int
    destination_id: int
    attempt_number: int
    event: dict | None       # the envelope; None once retention purged the event


# The statements of every attempt, built once with their values as bound parameters, on
# the tables, run on the session's connection (Core): building ORM statements per call,
# and the ORM's bulk-update path that Session.execute takes for a mapped table, cost
# more CPU than the HTTP request.
_deliveries, _destinations, _events = (Delivery.__table__, Destination.__table__,
                                       Event.__table__)
_TAKEN = (_deliveries.c.id, _deliveries.c.destination_id, _deliveries.c.event_id,
          _deliveries.c.attempts)
_TAKE = dict(status=SENDING, attempts=_deliveries.c.attempts + 1,
             enqueued_at=bindparam("now", type_=Delivery.enqueued_at.type))
_CLAIM = (update(_deliveries)
          .where(_deliveries.c.id == bindparam("delivery_id"), _deliveries.c.status == QUEUED)
          .values(**_TAKE).returning(*_TAKEN))
_OLDEST_DUE = (select(_deliveries.c.id)
               .join(_destinations, _destinations.c.id == _deliveries.c.destination_id)
               .where(_deliveries.c.destination_id == bindparam("b_destination_id"),
                      _deliveries.c.status == PENDING,
                      _deliveries.c.next_attempt_at <= bindparam(
                          "now", type_=Delivery.next_attempt_at.type),
                      _destinations.c.state == ACTIVE, _destinations.c.paused.is_(False))
               .order_by(_deliveries.c.id).limit(1)
               .with_for_update(of=_deliveries, skip_locked=True).scalar_subquery())
_CLAIM_NEXT = (update(_deliveries)
               .where(_deliveries.c.id == _OLDEST_DUE, _deliveries.c.status == PENDING)
               .values(**_TAKE).returning(*_TAKEN))
_EVENT = select(_events.c.public_id, _events.c.type, _events.c.created_at,
                _events.c.data).where(_events.c.id == bindparam("event_id"))


def claim(session: Session, delivery_id: int) -> Claimed | None:
    """Take a queued delivery for sending, once; None if it is not queued (sent
    already, or handed out again)."""
    row = session.connection().execute(
        _CLAIM, {"delivery_id": delivery_id, "now": utcnow()}).first()
    return _with_event(session, row)


def claim_next(session: Session, destination_id: int) -> Claimed | None:
    """The destination's oldest due delivery, taken for sending; None if there is none,
    or the destination is paused or its breaker is not closed."""
    row = session.connection().execute(
        _CLAIM_NEXT, {"b_destination_id": destination_id, "now": utcnow()}).first()
    return _with_event(session, row)


def _with_event(session: Session, row) -> Claimed | None:
    if row is None:
        return None
    delivery_id, destination_id, event_id, attempt_number = row
    found = session.connection().execute(_EVENT, {"event_id": event_id}).first()
    return Claimed(delivery_id, destination_id, attempt_number,
                   envelope(*found) if found else None)


def body_of(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def headers_for(destination: Destination, webhook_id: str, body: bytes,
                now: dt.datetime) -> dict[str, str]:
    signatures = " ".join(Webhook(secret).sign(webhook_id, now, body)
                          for secret in signing_secrets(destination, now))
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signatures, "content-type": "application/json",
            "user-agent": USER_AGENT}


def deliver(session: Session, delivery_id: int, settings: SendSettings,
            http: HttpSessions) -> Attempt | None:
    """Make one attempt at a queued delivery and record it; None if it was not queued.

    After a success the same worker takes its destination's next due delivery at once
    (in the transaction that records the success), and so on for up to
    DELIVERY_CHAIN_SECONDS: a healthy destination's backlog drains at the speed of its
    receiver, not one dispatcher pass per batch, and each chain holds one of the
    destination's in-flight places, so its cap still holds. One commit per attempt,
    and none held open while the receiver answers. The last attempt made is returned."""
    claimed = claim(session, delivery_id)
    session.commit()  # the claim stands even if this process dies mid-send
    deadline = time.monotonic() + settings.chain_seconds
    attempt = None
    while claimed is not None:
        attempt = _attempt(session, claimed, settings, http)
        claimed = None
        if attempt is not None and attempt.succeeded and time.monotonic() < deadline:
            claimed = claim_next(session, attempt.destination_id)
        session.commit()
    return attempt


def _attempt(session: Session, claimed: Claimed, settings: SendSettings,
             http: HttpSessions) -> Attempt | None:
    destination = session.get(Destination, claimed.destination_id)
    if destination is None:
        return None  # deleted meanwhile, its deliveries with it
    if claimed.event is None:  # purged by retention before it could be sent
        return _record(session, claimed, settings, ok=False, status=None, latency=0.0,
                       error="event_expired", excerpt=b"", give_up=True)
    body = body_of(claimed.event)
    headers = headers_for(destination, claimed.event["id"], body, utcnow())
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
    return _record(session, claimed, settings, ok=error is None, status=status,
                   latency=time.monotonic() - started, error=error, excerpt=excerpt)


_ATTEMPT = insert(DeliveryAttempt.__table__)
# (parameters named apart from the columns: Core reserves those names in a SET)
_OUTCOME = dict(status=bindparam("b_status"), last_status_code=bindparam("b_status_code"),
                last_error=bindparam("b_error"))
_SENT = (_deliveries.c.id == bindparam("delivery_id"), _deliveries.c.status == SENDING)
_FINISHED = update(_deliveries).where(*_SENT).values(
    **_OUTCOME, finished_at=bindparam("b_finished_at", type_=Delivery.finished_at.type))
_TO_RETRY = update(_deliveries).where(*_SENT).values(
    **_OUTCOME, next_attempt_at=bindparam("b_next_attempt_at",
                                          type_=Delivery.next_attempt_at.type))
_FAILURES_RESET = (update(_destinations)
                   .where(_destinations.c.id == bindparam("destination_id"),
                          _destinations.c.state == ACTIVE,
                          _destinations.c.consecutive_failures > 0)
                   .values(consecutive_failures=0))


def _record(session: Session, claimed: Claimed, settings: SendSettings, *, ok: bool,
            status: int | None, latency: float, error: str | None, excerpt: bytes,
            give_up: bool = False) -> Attempt:
    delivery_id, destination_id = claimed.delivery_id, claimed.destination_id
    attempt_number = claimed.attempt_number
    now = utcnow()
    kept = free_text(redact(excerpt.decode("utf-8", "replace")), EXCERPT_KEPT) if excerpt \
        else None
    session.connection().execute(_ATTEMPT, {
        "delivery_id": delivery_id, "destination_id": destination_id, "attempted_at": now,
        "status_code": status, "latency": latency, "succeeded": ok, "error": error,
        "response_excerpt": kept})
    final = ok or give_up or attempt_number > len(settings.schedule)
    values: dict = {"delivery_id": delivery_id, "b_status_code": status, "b_error": error}
    if final:
        session.connection().execute(_FINISHED, {
            **values, "b_status": SUCCEEDED if ok else FAILED, "b_finished_at": now})
    else:
        delay = settings.schedule[attempt_number - 1] * random.uniform(0.9, 1.1)
        session.connection().execute(_TO_RETRY, {
            **values, "b_status": PENDING,
            "b_next_attempt_at": now + dt.timedelta(seconds=delay)})
    _move_breaker(session, destination_id, ok, error, settings, now)
    label = str(destination_id)
    DELIVERED.labels(label, "succeeded" if ok else ("failed" if final else "retrying")).inc()
    LATENCY.labels(label).observe(latency)
    return Attempt(delivery_id, destination_id, ok, status, latency, error, final)


def _move_breaker(session: Session, destination_id: int, ok: bool, error: str | None,
                  settings: SendSettings, now: dt.datetime) -> None:
    known = session.get(Destination, destination_id)  # as loaded when the chain began
    if ok and known is not None and known.state == ACTIVE:
        # The common case, a success on a closed breaker: one UPDATE that usually matches
        # nothing (a row written per delivery would queue every sender on its lock).
        session.connection().execute(_FAILURES_RESET, {"destination_id": destination_id})
        return
    destination = session.scalar(
        select(Destination).where(Destination.id == destination_id).with_for_update()
        .execution_options(populate_existing=True))
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

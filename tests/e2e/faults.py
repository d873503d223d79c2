"""Fault-injection helpers: a provider-like sender, the tally of what became of its events.

The sender behaves as payment providers do: it keeps sending new events at a
steady rate and retries each one until it gets a 2xx. Every attempt is recorded
with its send and answer times, so a test can look at a fault's window.
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import func, select

from payments.ledger import Payment
from tests.e2e.webhook_load import payment_event
from tests.webhooks import signing
from webapp.extensions import db
from webhooks.models import PROCESSED, WebhookEvent


@dataclasses.dataclass(frozen=True)
class Attempt:
    event: int
    sent_at: float
    answered_at: float
    status: int  # 0: no HTTP answer (connection refused, timeout)
    retry_after: str | None


class SteadySender:
    """Sends Stripe-signed events from `connections` threads, each retried until a 2xx."""

    def __init__(self, url: str, secret: str, prefix: str, rate: float = 40.0,
                 connections: int = 4, retry_interval: float = 0.5):
        self.url, self.secret, self.prefix = url, secret, prefix
        self.interval = connections / rate
        self.retry_interval = retry_interval
        self.connections = connections
        self.attempts: list[Attempt] = []
        self.acknowledged: set[int] = set()
        self._next = itertools.count()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.sent = 0

    def event_key(self, index: int) -> str:
        return f"evt_{self.prefix}_{index}"

    def reference(self, index: int) -> str:
        return f"pi_{self.prefix}_{index}"

    def start(self) -> "SteadySender":
        for _ in range(self.connections):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 90) -> None:
        """No new events; wait for every event already sent to be acknowledged."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "events still unacknowledged"

    def _run(self) -> None:
        session = requests.Session()
        while not self._stopping.is_set():
            started = time.monotonic()
            with self._lock:
                index = next(self._next)
                self.sent += 1
            body = payment_event(self.event_key(index), self.reference(index))
            while not self._deliver(session, index, body):
                time.sleep(self.retry_interval)
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def _deliver(self, session: requests.Session, index: int, body: bytes) -> bool:
        sent_at = time.monotonic()
        try:
            response = session.post(self.url, data=body, timeout=15,
                                    headers=signing.stripe_headers(body, self.secret))
            status, retry_after = response.status_code, response.headers.get("Retry-After")
        except requests.RequestException:
            session.close()
            status, retry_after = 0, None
        attempt = Attempt(index, sent_at, time.monotonic(), status, retry_after)
        with self._lock:
            self.attempts.append(attempt)
            if 200 <= status < 300:
                self.acknowledged.add(index)
        return 200 <= status < 300

    def tally(self, app) -> dict[str, int]:
        return tally(app, self.prefix, self.sent, self.acknowledged)

    def within(self, start: float, end: float) -> list[Attempt]:
        """Attempts sent and answered entirely inside [start, end]."""
        return [a for a in self.attempts if a.sent_at >= start and a.answered_at <= end]


def tally(app, prefix: str, sent: int, acknowledged: set[int]) -> dict[str, int]:
    """What became of events `evt_{prefix}_{i}` (payment `pi_{prefix}_{i}`), from the database."""
    keys = [f"evt_{prefix}_{i}" for i in sorted(acknowledged)]
    refs = [f"pi_{prefix}_{i}" for i in sorted(acknowledged)]
    like_events = WebhookEvent.event_key.like(f"evt_{prefix}_%")
    with app.app_context():
        session = db.session
        stored, distinct = session.execute(select(
            func.count(), func.count(func.distinct(WebhookEvent.event_key))).where(
            like_events)).one()
        processed_keys = set(session.scalars(select(WebhookEvent.event_key).where(
            like_events, WebhookEvent.status == PROCESSED)))
        transitions = dict(session.execute(select(Payment.reference, Payment.transitions).where(
            Payment.reference.like(f"pi_{prefix}_%"))).all())
    applied = [ref for key, ref in zip(keys, refs)
               if key in processed_keys and transitions.get(ref, 0) >= 1]
    return {
        "sent": sent,
        "acknowledged": len(keys),
        "processed": len(applied),
        "lost": len(keys) - len(applied),
        # a second row for one event, or a payment moved more than once by one event
        "duplicated": stored - distinct + sum(max(0, n - 1) for n in transitions.values()),
    }


def report(record_property, scenario: str, figures: dict) -> None:
    """Attach the figures to the test's report; the terminal summary prints them all."""
    record_property("fault_report", {"scenario": scenario, **figures})
    print(f"[fault] {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a worker's pool), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found

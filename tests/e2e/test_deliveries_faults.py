"""Deliveries under faults, through the real processes: signed Stripe webhooks flow
into gunicorn, the worker applies them, the `deliver` process pushes payment.updated
to three receivers. One receiver is down for 30 s, another answers after 20 s, the
third is healthy; then the `deliver` process group is SIGKILLed mid-delivery and
started again. Reported: events, delivered, lost (must be 0), duplicate deliveries
(only after the kill, which a redrive may repeat; none before it), and the healthy
receiver's p99 from event to receipt, without and beside the slow one."""
from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import threading
import time

import pytest
import requests

from tests.e2e.conftest import STRIPE_SECRET, bearer, fresh_stack_environment
from tests.e2e.faults import SteadySender, report
from tests.e2e.harness import Stack, app_settings
from tests.fakes.receiver import Receiver
from tests.services import free_port, wait_for
from webapp import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
DOWN_SECONDS, SLOW_SECONDS = 30, 20


class Restartable:
    """A receiver on a fixed port that can be taken down and brought back."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.received: list = []
        self.secrets: list[str] = []
        self.current: Receiver | None = None

    def up(self) -> None:
        self.current = Receiver(*self.secrets, port=self.port)
        self.current.received = self.received  # one log across its lives

    def down(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


def references(receiver) -> collections.Counter:
    return collections.Counter(r.payload["data"]["reference"] for r in receiver.received
                               if r.verified and r.payload["type"] == "payment.updated")


def p99_ms(receiver, since: float, until: float) -> float:
    lags = sorted(
        (r.at - dt.datetime.fromisoformat(r.payload["timestamp"]).timestamp()) * 1000
        for r in receiver.received if r.verified and since <= r.at <= until)
    return round(lags[max(0, int(len(lags) * 0.99) - 1)], 1)


def send(sender_url: str, prefix: str, count: int, rate: float = 40.0) -> SteadySender:
    sender = SteadySender(sender_url, STRIPE_SECRET, prefix, rate=rate).start()
    wait_for(lambda: sender.sent >= count, timeout=count / rate * 3 + 30, interval=0.1,
             what=f"{count} events sent")
    sender.stop()
    return sender


def test_down_and_slow_receivers_then_a_killed_deliver_process_lose_nothing(
        tmp_path, worker_index, record_property):
    env = fresh_stack_environment(tmp_path, worker_index, "deliveries_faults")
    env.update(WORKER_CONCURRENCY="4", DELIVERY_POLL_INTERVAL="0.2",
               DELIVERY_TIMEOUT="25", DELIVERY_REDRIVE_AFTER="55",
               DELIVERY_RETRY_SCHEDULE="1,2,4,8,8,8,8,8,8,8,8,8",
               DESTINATION_PROBE_INTERVAL="5")
    stack = Stack(tmp_path / "logs", env)
    stack.release()
    stack.start("web", "worker", "deliver")
    app = create_app(app_settings(env))
    admin = bearer(app, "faults-admin", ["admin"])
    healthy, slow, flaky = Receiver(), Receiver(), Restartable()
    try:
        stack.wait_ready()
        for receiver in (healthy, slow, flaky):
            created = requests.post(stack.url("/v1/admin/destinations"), headers=admin,
                                    timeout=10, json={
                                        "name": "r", "url": receiver.url, "events": ["payment.*"],
                                        "allowed_networks": ["127.0.0.0/8"], "allow_http": True})
            assert created.status_code == 201, created.text
            receiver.secrets.append(created.json()["secret"])
        flaky.up()
        webhooks = stack.url("/webhooks/stripe")

        # A: every receiver answering at once
        started = time.time()
        baseline = send(webhooks, "calm", 200)
        wait_for(lambda: len(references(healthy)) >= 200, timeout=60, what="the calm events")
        without_ms = p99_ms(healthy, started, time.time())

        # B: one receiver down for 30 s, another answering after 20 s, 1,000 events
        flaky.down()
        slow.delay = SLOW_SECONDS
        threading.Timer(DOWN_SECONDS, flaky.up).start()
        started = time.time()
        stormy = send(webhooks, "storm", 1000)
        wait_for(lambda: len(references(healthy)) >= 1200, timeout=120,
                 what="the healthy receiver to have every event")
        beside_ms = p99_ms(healthy, started, time.time())
        slow.delay = 0
        expected = {baseline.reference(i) for i in baseline.acknowledged} | {
            stormy.reference(i) for i in stormy.acknowledged}
        everyone = (healthy, slow, flaky)
        wait_for(lambda: all(expected <= set(references(r)) for r in everyone), timeout=240,
                 interval=0.5, what="every receiver to have every event")
        before_kill = sum(n - 1 for r in everyone for n in collections.Counter(
            x.webhook_id for x in r.received if x.verified).values() if n > 1)

        # C: the deliver process group SIGKILLed while deliveries are in flight
        slow.delay = SLOW_SECONDS
        in_flight_before = len(slow.received)
        last = send(webhooks, "kill", 100)
        wait_for(lambda: len(slow.received) > in_flight_before, timeout=60,
                 what="a delivery in flight to the slow receiver")
        os.killpg(stack.processes.pop("deliver").pid, signal.SIGKILL)
        slow.delay = 0
        stack.start("deliver")
        expected |= {last.reference(i) for i in last.acknowledged}
        wait_for(lambda: all(expected <= set(references(r)) for r in everyone), timeout=240,
                 interval=0.5, what="every receiver to have every event after the kill")
        counts = [references(r) for r in everyone]
        duplicates = sum(n - 1 for r in everyone for n in collections.Counter(
            x.webhook_id for x in r.received if x.verified).values() if n > 1)
        figures = {
            "events": len(expected),
            "receivers": 3,
            "delivered": sum(len(set(c) & expected) for c in counts),
            "lost": sum(len(expected - set(c)) for c in counts),
            "duplicates_before_kill": before_kill,
            "duplicates_after_kill": duplicates - before_kill,
            "unverified": sum(1 for r in everyone for x in r.received if not x.verified),
            "requests_cut_by_the_kill": sum(r.cut for r in (healthy, slow))
            + (flaky.current.cut if flaky.current else 0),
            "healthy_p99_ms_without_slow": without_ms,
            "healthy_p99_ms_beside_slow": beside_ms,
        }
        report(record_property, "deliveries: a receiver down 30 s, one answering after 20 s, "
                                "then deliver SIGKILLed", figures)
        assert figures["lost"] == 0
        assert figures["duplicates_before_kill"] == 0
        assert figures["unverified"] == 0
        # the slow receiver holds at most its in-flight cap of deliver's threads: the
        # healthy one keeps its pace (seconds would mean it queued behind the slow one)
        assert beside_ms < 5000
    finally:
        stack.stop()
        for receiver in (healthy, slow):
            receiver.stop()
        flaky.down()
        app.extensions["sluice.db"].engine.dispose()

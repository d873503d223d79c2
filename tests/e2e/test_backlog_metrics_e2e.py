"""The falling-behind gauges on the real gunicorn: with no worker running, deliveries
pile up in the outbox (the workers publish it), and the outbox backlog and the oldest
unprocessed age say so; a worker drains them, measures its queues, and every gauge
comes back to zero."""
from __future__ import annotations

import re
import time

import pytest
import requests

from tests.e2e.conftest import STRIPE_SECRET, fresh_stack_environment
from tests.e2e.harness import Stack
from tests.e2e.webhook_load import payment_event
from tests.services import wait_for
from tests.webhooks import signing

pytestmark = pytest.mark.e2e


def gauge(stack: Stack, name: str) -> float | None:
    """The sample's value, None when /metrics has no such sample."""
    text = requests.get(stack.url("/metrics"), timeout=10).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_a_stopped_worker_shows_as_a_growing_backlog(tmp_path, worker_index):
    env = fresh_stack_environment(tmp_path, worker_index, "backlog_gauges")
    env.update(METRICS_CACHE_SECONDS="0.2")
    stack = Stack(tmp_path / "logs", env)
    stack.release()
    stack.start("web")
    try:
        stack.wait_ready()
        for i in range(5):
            body = payment_event(f"evt_backlog_{i}", f"pi_backlog_{i}")
            headers = signing.stripe_headers(body, STRIPE_SECRET)
            assert requests.post(stack.url("/webhooks/stripe"), data=body, timeout=10,
                                 headers=headers).status_code == 202
        depth = 'sluice_queue_depth{queue="webhooks"}'
        backlog = "sluice_outbox_unpublished"
        age = 'sluice_events_oldest_unprocessed_age_seconds{source="stripe"}'
        # Queue depths are measured by the workers: with none running, they are unknown.
        assert (gauge(stack, backlog), gauge(stack, depth)) == (5, None)
        first = gauge(stack, age)
        time.sleep(1.5)
        assert gauge(stack, age) >= first + 1  # still waiting, and older
        stack.start("worker")
        wait_for(lambda: gauge(stack, backlog) == gauge(stack, depth) == gauge(stack, age) == 0,
                 timeout=60,
                 interval=0.5, what="the worker to drain the backlog")
    finally:
        stack.stop()

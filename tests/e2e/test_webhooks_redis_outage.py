"""Redis stopped under the running stack: webhooks are still accepted, then processed.

The stack runs on its own throwaway redis-server, never the machine's shared one.
"""
import time

import pytest
from sqlalchemy import func, select

from store.outbox import OutboxMessage
from tests import services
from tests.e2e.conftest import STRIPE_SECRET, stack_environment
from tests.e2e.harness import APP_SETTINGS, Stack
from tests.e2e.webhook_load import deliver, payment_event
from tests.services import ThrowawayRedis, wait_for
from webapp.extensions import db
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.e2e


@pytest.fixture
def outage_stack(tmp_path, worker_index):
    redis_server = ThrowawayRedis(tmp_path / "redis").start()
    env = stack_environment(tmp_path, redis_server.url, services.fresh_database(
        f"sluice_outage_{worker_index}", tmp_path))
    stack = Stack(tmp_path / "logs", env)
    stack.release()
    stack.start("web", "worker", "beat")
    try:
        stack.wait_ready()
        yield stack, redis_server
    finally:
        stack.stop()
        redis_server.stop()


def count(app, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(WebhookEvent).where(*where))


def test_webhooks_are_accepted_while_redis_is_down_and_processed_after(
        outage_stack, monkeypatch):
    stack, redis_server = outage_stack
    from webapp import create_app
    monkeypatch.setenv("E2E_STRIPE_SECRET", STRIPE_SECRET)
    keys = (*APP_SETTINGS, "SLUICE_SOURCES_FILE")
    app = create_app({k: stack.env[k] for k in keys})
    url = stack.url("/webhooks/stripe")
    before = [payment_event(f"evt_pre_{i}", f"pi_pre_{i}") for i in range(20)]
    during = [payment_event(f"evt_down_{i}", f"pi_down_{i}") for i in range(20)]

    assert deliver(url, before, STRIPE_SECRET, connections=5) == {202: 20}
    wait_for(lambda: count(app, WebhookEvent.status == "processed") == 20, timeout=60,
             what="the first batch to be processed")

    redis_server.stop()
    started = time.monotonic()
    assert deliver(url, during, STRIPE_SECRET, connections=5) == {202: 20}
    print(f"20 deliveries with Redis down took {time.monotonic() - started:.2f}s")
    with app.app_context():
        waiting = db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                    .where(OutboxMessage.published_at.is_(None)))
    assert waiting == 20  # committed, each waiting in the outbox for the broker

    time.sleep(3)
    redis_server.start()  # same port, empty: nothing was left in it to lose

    def processed() -> int:
        stack.assert_running()  # a worker that exited on the outage fails here, with its log
        return count(app, WebhookEvent.status == "processed")
    wait_for(lambda: processed() == 40, timeout=90, interval=0.5,
             what="the relay and the reconnected worker to process the rest")
    assert count(app) == 40

    # The worker's relay has reconnected too: new deliveries are published and
    # processed within moments, not at beat's next relay_outbox.
    after = [payment_event(f"evt_after_{i}", f"pi_after_{i}") for i in range(20)]
    assert deliver(url, after, STRIPE_SECRET, connections=5) == {202: 20}
    wait_for(lambda: processed() == 60, timeout=8, interval=0.2, what="the later deliveries")
    app.extensions["sluice.db"].engine.dispose()

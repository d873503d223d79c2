"""The worker's outbox relay (tasks/relay.py): what the web commits reaches the broker
within moments, each row once however many relays run, and a broker outage only
delays it."""
from __future__ import annotations

import time

import pytest
import redis
from sqlalchemy import func, select

from store.outbox import OutboxMessage, enqueue
from tasks.celery_app import outbox_publisher
from tasks.relay import Relay
from tests import services
from tests.helpers.outbox import queued
from tests.helpers.workers import celery_of
from tests.services import ThrowawayRedis, wait_for
from webapp import create_app
from webapp.extensions import db
from webapp.migrate import upgrade


@pytest.fixture
def committing_app(tmp_path, worker_index, redis_db, redis_url, monkeypatch):
    """The web's app on a database of its own: the relays' threads need real commits."""
    monkeypatch.setenv("SLUICE_INSTANCE_PATH", str(tmp_path / "instance"))
    url = services.fresh_database(f"sluice_relay_{worker_index}", tmp_path)
    upgrade(url)

    def make(**overrides):
        return create_app({"DATABASE_URL": url, "REDIS_URL": redis_url,
                           "SECRET_KEY": "test-secret-key", "DATA_KEYS": services.DATA_KEYS,
                           "INDEX_KEY": services.INDEX_KEY, **overrides})
    app = make()
    yield make, app
    app.extensions["sluice.db"].engine.dispose()


def commit_pings(app, tokens: list[str]) -> None:
    with app.app_context():
        for token in tokens:
            enqueue(db.session, "sluice.ping", {"token": token}, queue="cron")
        db.session.commit()


def unpublished(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.published_at.is_(None)))


def relay_for(app, broker_app=None, batch: int = 7) -> Relay:
    celery = celery_of(broker_app or app)
    return Relay(app, outbox_publisher(celery), interval=0.05, batch=batch)


def test_two_relays_publish_each_committed_row_once_and_soon(committing_app, redis_db):
    _, app = committing_app
    relays = [relay_for(app), relay_for(app)]
    for relay in relays:
        relay.start()
    try:
        commit_pings(app, [f"early-{i}" for i in range(40)])  # several full batches
        started = time.monotonic()
        commit_pings(app, ["late"])
        wait_for(lambda: unpublished(app) == 0, timeout=10, interval=0.02,
                 what="the relays to publish the outbox")
        took = time.monotonic() - started
    finally:
        for relay in relays:
            relay.stop()
    tokens = [m["kwargs"]["token"] for m in queued(redis_db, "cron")]
    assert sorted(tokens) == sorted([f"early-{i}" for i in range(40)] + ["late"])  # once each
    assert took < 2, took  # an interval of 0.05 s, not beat's 10 s


def test_a_broker_outage_delays_the_rows_and_loses_none(committing_app, tmp_path):
    make, app = committing_app
    broker = ThrowawayRedis(tmp_path / "broker").start()
    through = make(CELERY_BROKER_URL=broker.url)
    relay = relay_for(app, broker_app=through)
    relay.start()
    try:
        broker.stop()
        commit_pings(app, ["during-1", "during-2"])
        time.sleep(1)
        assert unpublished(app) == 2  # nothing marked published that was not
        with app.app_context():
            assert db.session.scalar(select(func.max(OutboxMessage.attempts))) >= 1
        broker.start()  # same port, empty
        wait_for(lambda: unpublished(app) == 0, timeout=15, interval=0.1,
                 what="the relay to publish once the broker is back (backoff at most 5 s)")
        tokens = [m["kwargs"]["token"] for m in queued(redis.Redis.from_url(broker.url), "cron")]
        assert sorted(tokens) == ["during-1", "during-2"]
    finally:
        relay.stop()
        broker.stop()
        through.extensions["sluice.db"].engine.dispose()


def test_a_fork_waits_until_the_relay_is_out_of_the_database(committing_app, redis_db):
    # The pool forks a replacement whenever a process dies. A fork while the relay is
    # inside the database driver gave the child the driver's mutexes locked: on SQLite
    # it then held the write lock for good, and the import it was given never finished.
    import os
    import threading

    _, app = committing_app
    inside, leave = threading.Event(), threading.Event()

    def slow_publisher(message):  # the relay is mid-pass, its transaction open
        inside.set()
        leave.wait(5)
    relay = Relay(app, slow_publisher, interval=0.05, batch=7)
    commit_pings(app, ["held"])
    relay.start()
    try:
        assert inside.wait(5), "the relay never started its pass"
        threading.Timer(0.5, leave.set).start()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: nothing to do but exit at once
            os._exit(0)
        waited = time.monotonic() - started
        os.waitpid(pid, 0)
    finally:
        leave.set()
        relay.stop()
    assert waited >= 0.4, f"forked after {waited:.2f} s, while the relay was mid-pass"

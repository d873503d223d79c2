"""Each worker publishes the outbox as it fills: the web hands work over by commit alone.

A webhook delivery (or an upload, a replay) is answered once its row and its outbox
row are committed; the web process never talks to the broker. Publishing there,
after commit, cost the request thread as much CPU as verifying, limiting and
storing the delivery together (Celery's `send_task` builds and serialises each
message), and a slow broker would have held the request up. Here it is done by a
thread in every worker's main process (a bootstep): it publishes unpublished rows
oldest first, in batches, polls again at once while a batch comes back full and
otherwise every OUTBOX_POLL_INTERVAL seconds, so a message waits at most about that
long. `SKIP LOCKED` lets the relays of several workers share the backlog without
sending a row twice. beat's `relay_outbox` job stays as the safety net, for rows
older than OUTBOX_RELAY_AFTER while no worker runs a relay (OUTBOX_POLL_INTERVAL=0
turns this one off).

Work that tasks enqueue goes the same way: this relay is the workers' one publisher,
so each row is sent once.

The same thread runs the deliveries dispatcher (deliveries/dispatch.py) every
DELIVERY_POLL_INTERVAL: it fans the event log out into deliveries and queues the due
ones through the outbox, which this loop then publishes. One thread, so a fork waits
for one pass, not two.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time

from celery import bootsteps
from celery.signals import worker_process_init
from flask import Flask

from deliveries.dispatch import DispatchSettings, dispatch
from store.db import DATABASE_UNAVAILABLE
from store.publishing import Publisher, PublishResult, publish_pending
from tasks.app_state import database, db_session

log = logging.getLogger(__name__)

BACKOFF_MAX = 5.0  # seconds between tries while the broker or the database is away


class OutboxRelay(bootsteps.StartStopStep):
    """A worker step: the relay thread, started after the pool has forked its
    processes (they must not inherit a connection the thread holds)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.relay: Relay | None = None

    def start(self, worker) -> None:
        from tasks.celery_app import outbox_publisher  # it imports this module

        flask_app: Flask = worker.app.flask_app
        interval = flask_app.config["OUTBOX_POLL_INTERVAL"]
        if interval <= 0:
            return
        engine = database(flask_app).engine

        def forget_parent_connections(**_):
            # A pool process forked later (one replacing a process that died) would
            # otherwise share the sockets of the connections this thread pools.
            engine.dispose(close=False)
        worker_process_init.connect(forget_parent_connections, weak=False)
        self.relay = Relay(flask_app, outbox_publisher(worker.app), interval,
                           flask_app.config["OUTBOX_RELAY_BATCH"],
                           dispatch_interval=flask_app.config["DELIVERY_POLL_INTERVAL"])
        self.relay.start()

    def stop(self, worker) -> None:
        if self.relay is not None:
            self.relay.stop()


class Relay:
    """The loop: publish a batch; at once again after a full one, else after `interval`."""

    def __init__(self, flask_app: Flask, publisher: Publisher, interval: float, batch: int,
                 dispatch_interval: float = 0.0):
        self.flask_app = flask_app
        self.publisher = publisher
        self.interval = interval
        self.batch = batch
        self.dispatch_interval = dispatch_interval  # 0: no dispatcher in this worker
        self._dispatched_at = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        # The pool forks a new process whenever one dies (SIGKILL, OOM, max tasks). A
        # fork while this thread is inside the database driver hands the child the
        # driver's mutexes locked, with no thread left to unlock them: on SQLite a child
        # that had begun its transaction then held the database's write lock for good,
        # and every other process waited on it. So a fork waits for the relay's pass.
        self._in_database = threading.Lock()
        os.register_at_fork(before=self._in_database.acquire,
                            after_in_parent=self._in_database.release,
                            after_in_child=self._in_database.release)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        wait, failing = self.interval, False
        while not self._stopping.is_set():
            try:
                self._dispatch_when_due()
                result = self.relay_once()
            except DATABASE_UNAVAILABLE as exc:
                result = PublishResult(failed=1)
                if not failing:
                    log.warning("outbox relay: the database is unavailable",
                                extra={"error": type(exc).__name__})
            except Exception:  # a bug must not end the thread: log it, try again later
                result = PublishResult(failed=1)
                log.exception("outbox relay failed")
            failing = bool(result.failed)
            if failing:  # the broker (or the database) refused: back off, up to BACKOFF_MAX
                wait = min(wait * 2, BACKOFF_MAX)
            else:
                wait = self.interval
                if result.published == self.batch:
                    continue  # a full batch: there is likely more
            self._stopping.wait(wait)

    def _dispatch_when_due(self) -> None:
        if self.dispatch_interval <= 0 \
                or time.monotonic() - self._dispatched_at < self.dispatch_interval:
            return
        self._dispatched_at = time.monotonic()
        with self._in_database, self.flask_app.app_context():
            dispatch(db_session(self.flask_app), DispatchSettings.from_config(
                self.flask_app.config))

    def relay_once(self) -> PublishResult:
        # a session of its own, closed as the app context ends; no fork meanwhile
        with self._in_database, self.flask_app.app_context():
            return publish_pending(db_session(self.flask_app),
                                   self.publisher, older_than=dt.timedelta(0),
                                   batch_size=self.batch)

"""Gauges that show Sluice falling behind, computed when Prometheus scrapes.

A scrape never runs the queries itself more than once per METRICS_CACHE_SECONDS in
each process (concurrent scrapes wait for the one computing), so a scrape storm
cannot load the database. Labels are bounded by configuration: sources from the
sources file, queues and jobs from the code; never ids.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Iterator

from flask import Flask
from prometheus_client.core import GaugeMetricFamily

from cron.operations import last_success
from tasks import scanner_state
from tasks.app_state import db_session, redis_client, sources
from webapp import snapshot

CLAMD_DATE = "%a %b %d %H:%M:%S %Y"


def clamd_signatures_age(version: str, now: dt.datetime) -> float | None:
    """Seconds since clamd's signature database was built, from its VERSION reply
    ("ClamAV 1.0.7/27500/Tue Dec  1 08:00:00 2026"); None when it does not say."""
    parts = version.split("/")
    if len(parts) < 3:
        return None
    try:
        built = dt.datetime.strptime(" ".join(parts[2].split()), CLAMD_DATE)
    except ValueError:
        return None
    return max(0.0, (now - built.replace(tzinfo=dt.timezone.utc)).total_seconds())


class BacklogCollector:
    def __init__(self, app: Flask):
        self.app = app
        self._lock = threading.Lock()
        self._cached: tuple[float, list] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            ttl = self.app.config["METRICS_CACHE_SECONDS"]
            if self._cached is None or time.monotonic() - self._cached[0] >= ttl:
                self._cached = (time.monotonic(), list(self._measure()))
            return iter(self._cached[1])

    def _measure(self) -> Iterator[GaugeMetricFamily]:
        app = self.app
        with app.app_context():
            session = db_session(app)
            try:
                now = snapshot.take(session, redis_client(app), app.config, sources(app))
                successes = {state.name: last_success(session, state.name)
                             for state in now.jobs}
            finally:
                session.close()
        yield from _gauges(now, successes)
        # Only when a worker's clamd answered with its database's date: a family without
        # a sample reads as a bug. A database of local .ndb files alone, as in the tests,
        # has none. The workers report it (tasks/scanner_state.py): web hosts need no clamd.
        age = self._clamd_age(now.now)
        if age is not None:
            yield GaugeMetricFamily("sluice_clamd_signatures_age_seconds",
                                    "Age of clamd's signature database", value=age)

    def _clamd_age(self, now: dt.datetime) -> float | None:
        reported = scanner_state.recorded(redis_client(self.app),
                                          self.app.config["REDIS_KEY_PREFIX"])
        version = reported.get("version")
        return clamd_signatures_age(version, now) if version else None


def _gauges(now: snapshot.Snapshot, successes: dict) -> Iterator[GaugeMetricFamily]:
    def age(then: dt.datetime | None) -> float:
        return now.age(then) or 0.0  # a gauge says 0 for "none"

    yield GaugeMetricFamily("sluice_outbox_unpublished", "Outbox rows not yet published",
                            value=now.outbox_unpublished)
    yield GaugeMetricFamily("sluice_outbox_oldest_unpublished_age_seconds",
                            "Age of the oldest unpublished outbox row (0: none)",
                            value=age(now.outbox_oldest))
    waiting = GaugeMetricFamily(
        "sluice_events_oldest_unprocessed_age_seconds",
        "Age of the oldest event still waiting for its handler (0: none)", labels=["source"])
    dead = GaugeMetricFamily("sluice_events_dead", "Events parked dead", labels=["source"])
    for source, facts in now.events.items():
        waiting.add_metric([source], age(facts["oldest_unprocessed"]))
        dead.add_metric([source], facts["dead"])
    yield waiting
    yield dead
    documents = GaugeMetricFamily("sluice_documents", "Documents by status", labels=["status"])
    for status, count in now.documents.items():
        documents.add_metric([status], count)
    yield documents
    yield GaugeMetricFamily("sluice_documents_oldest_pending_scan_age_seconds",
                            "Age of the oldest document waiting for a scan (0: none)",
                            value=age(now.oldest_pending_scan))
    yield GaugeMetricFamily("sluice_imports_running", "Imports queued or running",
                            value=len(now.imports))
    yield GaugeMetricFamily("sluice_imports_rows_per_second",
                            "Rows per second across running imports",
                            value=sum(p["rows_per_second"] for p in now.imports))
    success = GaugeMetricFamily("sluice_job_last_success_timestamp_seconds",
                                "When each job last succeeded (UNIX time; 0: never)",
                                labels=["job"])
    outcome = GaugeMetricFamily("sluice_job_last_outcome",
                                "1 for each job's last outcome", labels=["job", "outcome"])
    interval = GaugeMetricFamily("sluice_job_interval_seconds",
                                 "How often beat runs each job", labels=["job"])
    for state in now.jobs:
        good = successes.get(state.name)
        success.add_metric([state.name], good.started_at.timestamp() if good else 0)
        if state.last is not None:
            outcome.add_metric([state.name, state.last.outcome], 1)
        interval.add_metric([state.name], state.interval)
    yield success
    yield outcome
    yield interval
    depth = GaugeMetricFamily("sluice_queue_depth", "Messages waiting in each Celery queue",
                              labels=["queue"])
    for queue, count in now.queues.items():
        if count is not None:
            depth.add_metric([queue], count)
    yield depth
    # per destination, labelled by its id (a bounded set the operators create)
    backlog = GaugeMetricFamily("sluice_destination_backlog",
                                "Deliveries not yet done, per destination", labels=["destination"])
    oldest = GaugeMetricFamily("sluice_destination_oldest_waiting_age_seconds",
                               "Age of each destination's oldest delivery not yet done (0: none)",
                               labels=["destination"])
    state = GaugeMetricFamily("sluice_destination_state",
                              "1 for each destination's breaker state (active, failing, "
                              "disabled) and 1 for paused", labels=["destination", "state"])
    for destination_id, breaker, paused, figures in now.destinations:
        label = str(destination_id)
        backlog.add_metric([label], figures.backlog)
        oldest.add_metric([label], age(figures.oldest_waiting))
        state.add_metric([label, breaker], 1)
        if paused:
            state.add_metric([label, "paused"], 1)
    yield backlog
    yield oldest
    yield state

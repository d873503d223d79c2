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

from cron.jobs import registry
from cron.models import last_success, recent_runs
from documents.imports import progress
from documents.models import imports_in_progress, oldest_pending_scan, status_counts
from store.db import utcnow
from store.outbox import backlog
from tasks.app_state import db_session, redis_client, sources
from tasks.queue_depths import recorded
from webhooks import stats

CLAMD_DATE = "%a %b %d %H:%M:%S %Y"


def _age(now: dt.datetime, then: dt.datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then else 0.0


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
    return _age(now, built.replace(tzinfo=dt.timezone.utc))


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
            now = utcnow()
            try:
                yield from self._database_gauges(session, now)
            finally:
                session.close()
        depth = GaugeMetricFamily("sluice_queue_depth", "Messages waiting in each Celery queue",
                                  labels=["queue"])
        for queue, count in recorded(redis_client(app),
                                     app.config["REDIS_KEY_PREFIX"]).items():
            if count is not None:
                depth.add_metric([queue], count)
        yield depth
        # Only when clamd answered with its database's date: a family without a sample
        # reads as a bug. A database of local .ndb files alone, as in the tests, has
        # none, and a web host without clamd cannot tell (see the README).
        age = self._clamd_age(now)
        if age is not None:
            yield GaugeMetricFamily("sluice_clamd_signatures_age_seconds",
                                    "Age of clamd's signature database", value=age)

    def _database_gauges(self, session, now) -> Iterator[GaugeMetricFamily]:
        unpublished, oldest = backlog(session)
        yield GaugeMetricFamily("sluice_outbox_unpublished", "Outbox rows not yet published",
                                value=unpublished)
        yield GaugeMetricFamily("sluice_outbox_oldest_unpublished_age_seconds",
                                "Age of the oldest unpublished outbox row (0: none)",
                                value=_age(now, oldest))
        waiting = GaugeMetricFamily(
            "sluice_events_oldest_unprocessed_age_seconds",
            "Age of the oldest event still waiting for its handler (0: none)", labels=["source"])
        dead = GaugeMetricFamily("sluice_events_dead", "Events parked dead", labels=["source"])
        found = stats.backlog_by_source(session)
        for source in sources(self.app):
            facts = found.get(source, {"oldest_unprocessed": None, "dead": 0})
            waiting.add_metric([source], _age(now, facts["oldest_unprocessed"]))
            dead.add_metric([source], facts["dead"])
        yield waiting
        yield dead
        documents = GaugeMetricFamily("sluice_documents", "Documents by status",
                                      labels=["status"])
        for status, count in status_counts(session).items():
            documents.add_metric([status], count)
        yield documents
        yield GaugeMetricFamily("sluice_documents_oldest_pending_scan_age_seconds",
                                "Age of the oldest document waiting for a scan (0: none)",
                                value=_age(now, oldest_pending_scan(session)))
        running = [progress(session, job, now) for job in imports_in_progress(session)]
        yield GaugeMetricFamily("sluice_imports_running", "Imports queued or running",
                                value=len(running))
        yield GaugeMetricFamily("sluice_imports_rows_per_second",
                                "Rows per second across running imports",
                                value=sum(p["rows_per_second"] for p in running))
        yield from self._job_gauges(session)

    def _job_gauges(self, session) -> Iterator[GaugeMetricFamily]:
        success = GaugeMetricFamily("sluice_job_last_success_timestamp_seconds",
                                    "When each job last succeeded (UNIX time; 0: never)",
                                    labels=["job"])
        outcome = GaugeMetricFamily("sluice_job_last_outcome",
                                    "1 for each job's last outcome", labels=["job", "outcome"])
        interval = GaugeMetricFamily("sluice_job_interval_seconds",
                                     "How often beat runs each job", labels=["job"])
        for job in registry(self.app.config).values():
            good = last_success(session, job.name)
            success.add_metric([job.name], good.started_at.timestamp() if good else 0)
            last = recent_runs(session, job.name, limit=1)
            if last:
                outcome.add_metric([job.name, last[0].outcome], 1)
            interval.add_metric([job.name], job.interval)
        yield success
        yield outcome
        yield interval

    def _clamd_age(self, now: dt.datetime) -> float | None:
        url = self.app.config.get("CLAMD_URL")
        if not url:
            return None
        from documents.scanner import client_from_url

        try:
            return clamd_signatures_age(client_from_url(url, timeout=2).version(), now)
        except Exception:  # clamd away: /readyz says so; the gauge just goes stale
            return None

"""One snapshot of how far behind Sluice is, for the console's overview and the
Prometheus gauges alike: each figure is computed here once, by one query, so the page
and the alert rules can never disagree about it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Iterable, Mapping

import redis
from sqlalchemy.orm import Session

from cron.operations import JobState, job_states
from deliveries import destinations
from documents.imports import progress
from documents.models import imports_in_progress, oldest_pending_scan, status_counts
from store.db import utcnow
from store.outbox import backlog
from tasks.queue_depths import recorded
from webhooks import stats


@dataclasses.dataclass(frozen=True)
class Snapshot:
    now: dt.datetime
    outbox_unpublished: int
    outbox_oldest: dt.datetime | None
    # {source: {"oldest_unprocessed": when or None, "dead": n}}, each configured source
    events: dict[str, dict[str, Any]]
    oldest_unprocessed: dt.datetime | None  # over every source, configured or not
    documents: dict[str, int]          # by status, every status present
    oldest_pending_scan: dt.datetime | None
    imports: list[dict]                # progress of each queued or running import
    jobs: list[JobState]
    queues: dict[str, int | None]      # as the workers last recorded them
    # each destination: (id, state, paused, its figures)
    destinations: list[tuple[int, str, bool, destinations.Figures]]

    def age(self, then: dt.datetime | None) -> float | None:
        return max(0.0, (self.now - then).total_seconds()) if then else None


def take(session: Session, client: redis.Redis, config: Mapping[str, Any],
         sources: Iterable[str]) -> Snapshot:
    now = utcnow()
    unpublished, oldest = backlog(session)
    found = stats.backlog_by_source(session)
    waiting = [facts["oldest_unprocessed"] for facts in found.values()
               if facts["oldest_unprocessed"]]
    return Snapshot(
        now=now, outbox_unpublished=unpublished, outbox_oldest=oldest,
        # gauge labels stay bounded by configuration; a removed source's events still
        # count in oldest_unprocessed
        events={source: found.get(source, {"oldest_unprocessed": None, "dead": 0})
                for source in sources},
        oldest_unprocessed=min(waiting) if waiting else None,
        documents=status_counts(session), oldest_pending_scan=oldest_pending_scan(session),
        imports=[progress(session, job, now) for job in imports_in_progress(session)],
        jobs=job_states(session, config, client),
        queues=recorded(client, config["REDIS_KEY_PREFIX"]),
        destinations=_destinations(session))


def _destinations(session: Session) -> list[tuple[int, str, bool, destinations.Figures]]:
    found = destinations.find(session)
    figures = destinations.figures(session, [d.id for d in found])
    return [(d.id, d.state, d.paused, figures[d.id]) for d in found]

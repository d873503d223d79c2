"""What operators do with scheduled jobs: see each one's state, read its history, and
run it now. The admin API, the console, the overview, the gauges and `flask cron` call
these, so "the last run" is one query wherever it is shown.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from cron.jobs import registry
from cron.lock import held_for
from cron.models import SUCCEEDED, JobRun
from cron.runner import Job
from store import audit
from store.outbox import enqueue
from store.task_names import RUN_JOB


class JobNotFound(LookupError):
    pass


@dataclasses.dataclass(frozen=True)
class JobState:
    job: Job
    last: JobRun | None
    held_for: float | None  # seconds left on its lock; None: not running (or not asked)

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def interval(self) -> float:
        return self.job.interval

    @property
    def next_due(self) -> float | None:
        """When beat next runs it (UNIX time); None: at once, it never ran."""
        return self.last.started_at.timestamp() + self.job.interval if self.last else None


def find_job(config: Mapping[str, Any], name: str) -> Job:
    job = registry(config).get(name)
    if job is None:
        raise JobNotFound(name)
    return job


def recent_runs(session: Session, job: str, limit: int = 20) -> list[JobRun]:
    """A job's runs, newest first."""
    return list(session.scalars(select(JobRun).where(JobRun.job == job)
                                .order_by(JobRun.id.desc()).limit(limit)))


def last_success(session: Session, job: str) -> JobRun | None:
    return session.scalar(select(JobRun).where(JobRun.job == job, JobRun.outcome == SUCCEEDED)
                          .order_by(JobRun.id.desc()).limit(1))


def job_states(session: Session, config: Mapping[str, Any],
               client: redis.Redis | None = None) -> list[JobState]:
    """Every enabled job with its last run, and (given Redis) how long its lock is held."""
    states = []
    for job in registry(config).values():
        held = None
        if client is not None:
            try:
                held = held_for(client, job.name, config["REDIS_KEY_PREFIX"])
            except redis.RedisError:  # Redis away: the overview says so elsewhere
                pass
        runs = recent_runs(session, job.name, limit=1)
        states.append(JobState(job, runs[0] if runs else None, held))
    return states


def request_run(session: Session, job: Job, trigger: str, actor: str) -> None:
    """Queue a run of `job` on the worker (same lock and history as beat), audited;
    the caller commits."""
    enqueue(session, RUN_JOB, {"name": job.name, "trigger": trigger})
    audit.record(session, actor, "job.run", "job", job.name)

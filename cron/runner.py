"""Run one job under its lock and leave a record of every run, skips included."""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import socket
import time
from typing import Any, Callable

import redis
from prometheus_client import Counter
from sqlalchemy.orm import Session

from cron.lock import JobLock
from cron.models import FAILED, SKIPPED_LOCKED, SUCCEEDED, TIMED_OUT, JobRun
from store.db import utcnow
from store.payloads import describe_error
from store.publishing import Publisher

log = logging.getLogger(__name__)

RUNS = Counter("sluice_job_runs_total", "Scheduled job runs by outcome", ["job", "outcome"])


class LockLost(RuntimeError):
    """The heartbeat could not extend the lock: another holder may be running."""


@dataclasses.dataclass
class JobContext:
    """What a job gets: its session, the lock's fencing token, and a way to stop."""
    session: Session
    fence: int
    config: dict[str, Any]
    publisher: Publisher | None
    lock: JobLock
    redis: redis.Redis

    def check(self) -> None:
        """Call between batches: raises LockLost once the lock is gone."""
        if self.lock.lost.is_set():
            raise LockLost(f"lock for {self.lock.job} lost")


def in_batches(ctx: JobContext, ids_query, statement, batch: int = 1000) -> int:
    """Apply `statement(ids)` to `ids_query`'s rows, `batch` ids a transaction, until
    none is left; checks the job's lock between batches. The rows it touched."""
    total = 0
    while True:
        ctx.check()
        ids = list(ctx.session.scalars(ids_query().limit(batch)))
        if not ids:
            return total
        ctx.session.execute(statement(ids))
        ctx.session.commit()
        total += len(ids)


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[JobContext], dict] | str   # or "module:function", imported when run
    interval: float          # seconds between beat runs
    soft_time_limit: float   # then the run ends as timed_out and frees its lock
    time_limit: float        # hard kill; the lock still frees itself after lock_ttl
    lock_ttl: float = 30.0   # kept alive by the heartbeat while the job runs

    def function(self) -> Callable[[JobContext], dict]:
        if callable(self.func):
            return self.func
        module, _, name = self.func.partition(":")
        return getattr(importlib.import_module(module), name)


def run_job(session: Session, client: redis.Redis, job: Job, *, trigger: str,
            config: dict[str, Any], publisher: Publisher | None = None, wait: float = 0,
            timeout_errors: tuple[type[BaseException], ...] = ()) -> JobRun:
    """Run `job` if its lock is free, else record a `skipped_locked` run. Commits."""
    run = JobRun(job=job.name, trigger=trigger, host=socket.gethostname()[:255],
                 pid=os.getpid(), detail={})
    lock = JobLock(client, job.name, ttl=job.lock_ttl, prefix=config["REDIS_KEY_PREFIX"])
    if not lock.acquire(wait=wait):
        return _finish(session, run, SKIPPED_LOCKED, started=time.monotonic())
    started = time.monotonic()
    run.fence = lock.fence
    # Everything after acquire() sits inside the try: if even the first commit
    # fails (database down), the lock must still be released, or the heartbeat
    # would keep it alive for the life of the worker and the job never runs again.
    try:
        session.add(run)
        session.commit()  # a run in progress is visible to `flask cron list`
        context = JobContext(session, lock.fence, config, publisher, lock, client)
        run.detail = job.function()(context) or {}
        context.check()  # work done after losing the lock is not a success
        outcome = SUCCEEDED
    except timeout_errors:
        session.rollback()
        outcome, run.error = TIMED_OUT, f"soft time limit of {job.soft_time_limit}s"
    except Exception as exc:
        session.rollback()
        log.exception("job failed", extra={"job": job.name})
        outcome, run.error = FAILED, describe_error(exc)
    finally:
        lock.release()
    return _finish(session, run, outcome, started)


def _finish(session: Session, run: JobRun, outcome: str, started: float) -> JobRun:
    run.outcome, run.finished_at = outcome, utcnow()
    run.duration = round(time.monotonic() - started, 6)
    session.add(run)
    session.commit()
    RUNS.labels(run.job, outcome).inc()
    if outcome == SKIPPED_LOCKED:
        log.info("job skipped: its lock is held", extra={"job": run.job})
    return run

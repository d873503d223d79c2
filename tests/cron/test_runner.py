"""Every run leaves a record: succeeded, failed, timed_out, or skipped_locked."""
import time

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cron.lock import JobLock
from cron.models import JobRun
from cron.runner import Job, run_job
from tests.services import free_port
from webapp.extensions import db


class Timeout(Exception):
    pass


def job(func, **kwargs) -> Job:
    return Job("test_job", func, interval=10, soft_time_limit=5, time_limit=10,
               **{"lock_ttl": 5.0, **kwargs})


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app, db.session


def run(ctx, func, **kwargs):
    app, session = ctx
    return run_job(session, app.extensions["sluice.redis"], job(func, **kwargs),
                   trigger="manual", config=app.config, timeout_errors=(Timeout,))


def stored(session) -> list[JobRun]:
    return session.scalars(select(JobRun).order_by(JobRun.id)).all()


def test_a_successful_run_is_recorded_with_its_fence_and_frees_the_lock(ctx):
    app, session = ctx
    first = run(ctx, lambda c: {"moved": 3, "fence_seen": c.fence})
    second = run(ctx, lambda c: {})
    assert (first.outcome, first.detail["moved"], first.trigger) == ("succeeded", 3, "manual")
    assert first.detail["fence_seen"] == first.fence and second.fence == first.fence + 1
    assert first.duration >= 0 and first.finished_at >= first.started_at
    assert [r.outcome for r in stored(session)] == ["succeeded", "succeeded"]


def test_a_held_lock_records_a_skip_and_does_not_run_the_job(ctx):
    app, session = ctx
    holder = JobLock(app.extensions["sluice.redis"], "test_job", ttl=5,
                     prefix=app.config["REDIS_KEY_PREFIX"])
    assert holder.acquire()
    calls = []
    skipped = run(ctx, lambda c: calls.append(1))
    holder.release()
    assert skipped.outcome == "skipped_locked" and calls == []
    assert [r.outcome for r in stored(session)] == ["skipped_locked"]


def test_failures_and_soft_timeouts_are_recorded_and_free_the_lock(ctx):
    app, session = ctx

    def boom(c):
        raise ValueError("no good for jane@example.com")

    def slow(c):
        raise Timeout()

    failed, timed_out, after = run(ctx, boom), run(ctx, slow), run(ctx, lambda c: {})
    # The error's type only: an arbitrary exception's text may quote the data.
    assert (failed.outcome, failed.error) == ("failed", "ValueError")
    assert timed_out.outcome == "timed_out"
    assert after.outcome == "succeeded"


def test_a_run_that_cannot_even_record_its_start_still_frees_its_lock(ctx):
    """Database down at the start of a run: the run fails, and the lock is free for
    the next one (it used to stay held, kept alive by the heartbeat, for good)."""
    app, session = ctx
    down = create_engine(f"postgresql+psycopg://sluice@127.0.0.1:{free_port()}/down",
                         connect_args={"connect_timeout": 2})
    calls = []
    with Session(down) as unreachable, pytest.raises(OperationalError):
        run_job(unreachable, app.extensions["sluice.redis"], job(lambda c: calls.append(1)),
                trigger="beat", config=app.config)
    down.dispose()
    assert calls == []
    assert run(ctx, lambda c: {}).outcome == "succeeded"


def test_a_job_stops_when_its_lock_is_lost(ctx):
    app, session = ctx
    client = app.extensions["sluice.redis"]

    def long_job(c):
        client.set(f"{app.config['REDIS_KEY_PREFIX']}cron:lock:test_job", "thief")
        for _ in range(100):
            c.check()
            time.sleep(0.05)
        return {"finished": True}

    lost = run(ctx, long_job, lock_ttl=0.6)
    assert lost.outcome == "failed" and lost.error.startswith("LockLost")

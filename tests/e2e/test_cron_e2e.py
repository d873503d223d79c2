"""Two beats and three workers: a job never runs twice at once, and skips are recorded."""
import shlex

import pytest
from sqlalchemy import func, select

from cron.models import JobRun
from store.outbox import OutboxMessage, enqueue
from tests.e2e.conftest import fresh_stack_environment
from tests.e2e.harness import Stack, app_settings, procfile
from tests.services import wait_for
from webapp import create_app
from webapp.extensions import db

pytestmark = pytest.mark.e2e
BACKLOG = 3000


@pytest.fixture
def crowded_stack(tmp_path, worker_index):
    env = fresh_stack_environment(tmp_path, worker_index, "cron_e2e")
    # The workers' own relays are off: this is about beat's relay_outbox job and its lock.
    env.update(OUTBOX_POLL_INTERVAL="0", OUTBOX_RELAY_AFTER="0", OUTBOX_RELAY_BATCH="25",
               WORKER_CONCURRENCY="2",
               CRON_DISABLED="reconcile_payments,purge_retention,rescan_documents")
    stack = Stack(tmp_path / "logs", env)
    stack.release()
    # A backlog nobody has published yet makes each relay run last long enough to
    # overlap the other beat's run of the same tick.
    app = create_app(app_settings(env))
    with app.app_context():  # the web's app: it publishes nothing itself
        for i in range(BACKLOG):
            enqueue(db.session, "sluice.ping", {"token": f"backlog-{i}"}, queue="cron")
        db.session.commit()
    beat = shlex.split(procfile()["beat"])
    worker = shlex.split(procfile()["worker"])
    stack.start("worker")
    stack.start("worker2", command=worker + ["-n", "second@%h"])
    stack.start("worker3", command=worker + ["-n", "third@%h"])
    stack.start("beat")
    stack.start("beat2", command=beat + ["-s", str(tmp_path / "beat2-schedule")])
    try:
        yield stack, app
    finally:
        stack.stop()
        app.extensions["sluice.db"].engine.dispose()


def test_no_job_ever_has_two_overlapping_successful_runs(crowded_stack):
    stack, app = crowded_stack

    def settled():
        stack.assert_running()
        with app.app_context():
            left = db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.published_at.is_(None)))
            runs = db.session.scalar(select(func.count()).select_from(JobRun).where(
                JobRun.job == "relay_outbox", JobRun.outcome == "succeeded"))
        return left == 0 and runs >= 6
    wait_for(settled, timeout=120, interval=0.5,
             what="the backlog to drain and relay to run a few times")

    with app.app_context():
        runs = db.session.scalars(select(JobRun).order_by(JobRun.started_at)).all()
    print({(r.job, r.outcome) for r in runs})
    for job in ("relay_outbox", "redrive_stuck_work"):
        done = [r for r in runs if r.job == job and r.outcome == "succeeded"]
        for earlier, later in zip(done, done[1:]):
            assert later.started_at >= earlier.finished_at, f"{job} ran twice at once"
        fences = [r.fence for r in done]
        assert fences == sorted(fences) and len(set(fences)) == len(fences)
    skipped = [r for r in runs if r.outcome == "skipped_locked"]
    assert any(r.job == "relay_outbox" for r in skipped), "the second beat's runs must skip"
    assert {r.trigger for r in runs} == {"beat"}
    assert not [r for r in runs if r.outcome == "failed"]

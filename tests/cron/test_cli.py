import threading

import pytest

from cron.lock import JobLock


def test_cron_run_runs_the_job_under_its_lock_and_records_it(app, runner):
    result = runner.invoke(args=["cron", "run", "relay_outbox"])
    assert result.exit_code == 0, result.output
    assert "  manual  succeeded  " in result.output and " UTC " in result.output
    history = runner.invoke(args=["cron", "history", "relay_outbox"]).output
    # JSONB keeps a detail's keys in its own order, so each figure is looked for alone
    assert "manual  succeeded" in history and "published=0" in history and "failed=0" in history
    listing = runner.invoke(args=["cron", "list"]).output.splitlines()
    assert listing[0].split() == ["JOB", "INTERVAL", "LAST", "RUN", "NEXT", "DUE"]
    relay_line = next(line for line in listing if line.startswith("relay_outbox"))
    assert "every 10s" in relay_line and "succeeded" in relay_line
    assert "(unix)" not in "\n".join(listing) and "{" not in "\n".join(listing)
    assert runner.invoke(args=["cron", "history", "purge_retention"]).output == (
        "No runs of purge_retention recorded.\n")


def test_cron_run_while_a_scheduled_run_holds_the_lock_says_so_and_fails(app, runner):
    holder = JobLock(app.extensions["sluice.redis"], "relay_outbox", ttl=10,
                     prefix=app.config["REDIS_KEY_PREFIX"])
    assert holder.acquire()
    try:
        result = runner.invoke(args=["cron", "run", "relay_outbox"])
    finally:
        holder.release()
    assert result.exit_code == 1
    assert "skipped_locked" in result.output
    assert "running elsewhere (its lock is held)" in result.output
    assert "skipped_locked" in runner.invoke(args=["cron", "history", "relay_outbox"]).output


def test_cron_run_rejects_unknown_jobs(runner):
    result = runner.invoke(args=["cron", "run", "nope"])
    assert result.exit_code != 0 and "no enabled job named 'nope'" in result.output


def _held_for(app, seconds: float) -> JobLock:
    """A lock on relay_outbox that another holder releases after `seconds`."""
    holder = JobLock(app.extensions["sluice.redis"], "relay_outbox", ttl=10,
                     prefix=app.config["REDIS_KEY_PREFIX"])
    assert holder.acquire()
    threading.Timer(seconds, holder.release).start()
    return holder


@pytest.mark.parametrize("args", [["--wait"], ["--wait", "5"], ["--wait=5"]],
                         ids=["no value", "seconds", "seconds with ="])
def test_cron_run_wait_waits_for_the_lock_then_runs(app, runner, args):
    holder = _held_for(app, 0.5)
    try:
        result = runner.invoke(args=["cron", "run", "relay_outbox", *args])
    finally:
        holder.release()
    assert result.exit_code == 0, result.output
    assert "  manual  succeeded  " in result.output


def test_cron_run_wait_with_a_bad_value_is_a_usage_error(runner):
    result = runner.invoke(args=["cron", "run", "relay_outbox", "--wait", "soon"])
    assert result.exit_code == 2 and "not a number of seconds" in result.output

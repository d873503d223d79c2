"""`flask cron list|run|history`: the same jobs, lock and history as beat."""
from __future__ import annotations

import datetime as dt
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from cron.models import SKIPPED_LOCKED, SUCCEEDED, JobRun
from cron.operations import JobNotFound, find_job, job_states, recent_runs
from cron.runner import run_job
from tasks.app_state import redis_client
from webapp.cli_output import echo_table, when
from webapp.extensions import db

cron_cli = AppGroup("cron", help="Scheduled jobs.")


def _describe(run: JobRun) -> str:
    duration = f"{run.duration:.3f}s" if run.duration is not None else "-"
    detail = ", ".join(f"{k}={v}" for k, v in (run.detail or {}).items())
    return (f"#{run.id} {run.started_at:%Y-%m-%d %H:%M:%S} UTC  {run.trigger}  {run.outcome}  "
            f"{duration}  fence={run.fence or '-'}  {detail}{run.error or ''}").rstrip()


@cron_cli.command("list")
def cron_list() -> None:
    """Jobs, their interval, last run and when the next one is due."""
    rows = []
    for state in job_states(db.session, current_app.config):
        last = state.last
        due = (last.started_at + dt.timedelta(seconds=state.interval)) if last else None
        rows.append((state.name, f"every {state.interval:g}s",
                     f"{when(last.started_at)} {last.outcome}" if last else "never",
                     when(due) if due else "now"))
    echo_table(("JOB", "INTERVAL", "LAST RUN", "NEXT DUE"), rows, "No jobs are enabled.")


def _wait_seconds(_ctx, _param, value: str) -> float | None:
    if value == UNTIL_TIME_LIMIT:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of seconds") from None
    if not 0 <= seconds < float("inf"):
        raise click.BadParameter("give 0 or more seconds")
    return seconds


UNTIL_TIME_LIMIT = "time-limit"


@cron_cli.command("run")
@click.argument("name")
@click.option("--wait", "wait", metavar="[SECONDS]", is_flag=False,
              flag_value=UNTIL_TIME_LIMIT, default="0", callback=_wait_seconds,
              help="Wait for the lock instead of skipping at once: SECONDS, or with no "
                   "value up to the job's hard time limit (no holder outlives it).")
def cron_run(name: str, wait: float | None) -> None:
    """Run a job now, in this process, under the same lock and history as beat."""
    from tasks.celery_app import celery_init_app, outbox_publisher  # Celery only when run

    try:
        job = find_job(current_app.config, name)
    except JobNotFound:
        raise click.ClickException(f"no enabled job named {name!r}") from None
    run = run_job(db.session, redis_client(), job, trigger="manual",
                  config=current_app.config,
                  publisher=outbox_publisher(celery_init_app(current_app)),
                  wait=job.time_limit if wait is None else wait)
    click.echo(_describe(run))
    if run.outcome == SKIPPED_LOCKED:
        click.echo(f"{name} is running elsewhere (its lock is held); nothing was done. "
                   "Use --wait [SECONDS] to wait for it.", err=True)
    if run.outcome != SUCCEEDED:
        sys.exit(1)


@cron_cli.command("history")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def cron_history(name: str, limit: int) -> None:
    runs = recent_runs(db.session, name, limit)
    for run in runs:
        click.echo(_describe(run))
    if not runs:
        click.echo(f"No runs of {name} recorded.")

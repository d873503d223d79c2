"""Run a scheduled job now, in the test process, as `flask cron run` does."""
from __future__ import annotations

from cron.jobs import registry
from cron.runner import run_job
from webapp.extensions import db


def run_now(app, name: str) -> dict:
    """Run job `name` under its lock and history; its detail, once it has succeeded."""
    with app.app_context():
        run = run_job(db.session, app.extensions["sluice.redis"], registry(app.config)[name],
                      trigger="manual", config=app.config)
        assert run.outcome == "succeeded", run.error
        return run.detail

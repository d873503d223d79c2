"""Admin API (scope `admin`): webhook events, dead letters, replay; scheduled jobs."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify
from sqlalchemy import select

from cron.jobs import registry
from cron.models import JobRun
from store.task_names import RUN_JOB
from webapp.auth import require_scopes
from webapp.errors import APIError
from webapp.extensions import db
from webapp.query_args import choice_arg, int_arg, text_arg
from store import audit
from webhooks.models import EVENT_STATUSES, WebhookEvent
from store.outbox import enqueue
from webhooks.processing import EventNotFound, list_events, replay

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")
MAX_PAGE = 200
SOURCE_NAME_MAX = 64  # webhook_events.source


def event_summary(event: WebhookEvent) -> dict:
    return {
        "id": event.id, "source": event.source, "event_key": event.event_key,
        "event_type": event.event_type, "status": event.status, "attempts": event.attempts,
        "last_error": event.last_error, "received_at": event.received_at.isoformat(),
        "processed_at": event.processed_at.isoformat() if event.processed_at else None,
    }


@bp.get("/webhook-events")
@require_scopes("admin")
def webhook_events():
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    events = list_events(db.session, status=choice_arg("status", EVENT_STATUSES),
                         source=text_arg("source", SOURCE_NAME_MAX), limit=limit,
                         before_id=int_arg("before_id", None, 1, 2 ** 62))
    return jsonify(events=[event_summary(e) for e in events],
                   next_before_id=events[-1].id if len(events) == limit else None)


@bp.get("/webhook-events/<id:event_id>")
@require_scopes("admin")
def webhook_event(event_id: int):
    event = db.session.get(WebhookEvent, event_id)
    if event is None:
        raise APIError(404, "not_found", "No such webhook event.")
    return jsonify(event_summary(event))


@bp.post("/webhook-events/<id:event_id>/replay")
@require_scopes("admin")
def replay_event(event_id: int):
    try:
        event = replay(db.session, event_id, actor=f"client:{g.client.name}")
    except EventNotFound:
        raise APIError(404, "not_found", "No such webhook event.") from None
    db.session.commit()
    return jsonify(id=event.id, status=event.status), 202


def run_summary(run: JobRun) -> dict:
    return {
        "id": run.id, "job": run.job, "trigger": run.trigger, "outcome": run.outcome,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration": run.duration, "fence": run.fence, "detail": run.detail,
        "error": run.error,
    }


def _job_or_404(name: str):
    job = registry(current_app.config).get(name)
    if job is None:
        raise APIError(404, "not_found", "No enabled job has that name.")
    return job


def _runs(name: str, limit: int) -> list[JobRun]:
    return list(db.session.scalars(select(JobRun).where(JobRun.job == name)
                                   .order_by(JobRun.id.desc()).limit(limit)))


@bp.get("/jobs")
@require_scopes("admin")
def jobs():
    return jsonify(jobs=[
        {"name": job.name, "interval": job.interval, "soft_time_limit": job.soft_time_limit,
         "time_limit": job.time_limit,
         "last_run": next((run_summary(r) for r in _runs(job.name, 1)), None)}
        for job in registry(current_app.config).values()])


@bp.get("/jobs/<name>/runs")
@require_scopes("admin")
def job_runs(name: str):
    _job_or_404(name)
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    return jsonify(runs=[run_summary(r) for r in _runs(name, limit)])


@bp.post("/jobs/<name>/run")
@require_scopes("admin")
def run_job_now(name: str):
    """Queue a run on the worker, under the same lock and history as beat."""
    job = _job_or_404(name)
    enqueue(db.session, RUN_JOB, {"name": job.name, "trigger": "admin"})
    audit.record(db.session, f"client:{g.client.name}", "job.run", "job", job.name)
    db.session.commit()
    return jsonify(job=job.name, status="queued"), 202

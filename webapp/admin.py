"""Admin API (scope `admin`): webhook events, dead letters, replay; WhatsApp media that
did not arrive; scheduled jobs."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify

from cron.models import JobRun
from cron.operations import JobNotFound, find_job, job_states, recent_runs, request_run
from webapp.auth import require_scopes
from webapp.conditional import check_if_match, tagged
from webapp.errors import APIError
from webapp.extensions import db
from webapp.idempotency import idempotent
from webapp.query_args import choice_arg, int_arg, text_arg
from webhooks.models import EVENT_STATUSES, WebhookEvent
from webhooks.operations import (
    EventFilter,
    EventNotFound,
    MediaNotFound,
    find_events,
    get_event,
    get_media,
    list_media,
    replay,
    retry_media,
)
from whatsapp.models import MEDIA_STATUSES, WhatsAppMedia

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")
MAX_PAGE = 200
SOURCE_NAME_MAX = 64  # webhook_events.source


def event_summary(event: WebhookEvent) -> dict:
    return {
        "id": event.id, "source": event.source, "event_key": event.event_key,
        "event_type": event.event_type, "kind": event.kind, "trust": event.trust,
        "status": event.status, "attempts": event.attempts,
        "last_error": event.last_error, "received_at": event.received_at.isoformat(),
        "processed_at": event.processed_at.isoformat() if event.processed_at else None,
    }


def _page(name: str, rows: list, limit: int, summary):
    return jsonify({name: [summary(row) for row in rows],
                    "next_before_id": rows[-1].id if len(rows) == limit else None})


def _paging() -> tuple[int, int | None]:
    return int_arg("limit", 50, 1, MAX_PAGE), int_arg("before_id", None, 1, 2 ** 62)


@bp.get("/webhook-events")
@require_scopes("admin")
def webhook_events():
    limit, before_id = _paging()
    which = EventFilter(status=choice_arg("status", EVENT_STATUSES),
                        source=text_arg("source", SOURCE_NAME_MAX))
    return _page("events", find_events(db.session, which, limit=limit, before_id=before_id),
                 limit, event_summary)


@bp.get("/webhook-events/<id:event_id>")
@require_scopes("admin")
def webhook_event(event_id: int):
    return tagged(event_summary(_found(get_event, event_id, "webhook event")))


def _found(get, object_id: int, noun: str, for_update: bool = False):
    """`get(session, id)`'s row (locked with `for_update`), or 404 for its NotFound."""
    try:
        return get(db.session, object_id, for_update=for_update)
    except (EventNotFound, MediaNotFound):
        raise APIError(404, "not_found", f"No such {noun}.") from None


@bp.post("/webhook-events/<id:event_id>/replay")
@require_scopes("admin")
@idempotent()
def replay_event(event_id: int):
    check_if_match(event_summary(_found(get_event, event_id, "webhook event", for_update=True)))
    event = replay(db.session, event_id, actor=f"client:{g.client.name}")
    db.session.commit()
    return jsonify(id=event.id, status=event.status), 202


def media_summary(media: WhatsAppMedia) -> dict:
    return {
        "id": media.id, "source": media.source, "provider": media.provider,
        "wamid": media.wamid, "position": media.position, "kind": media.kind,
        "mime_type": media.mime_type, "status": media.status,
        "error": ({"code": media.error_code, "message": media.error_message}
                  if media.error_code else None),
        "document_id": media.document_id, "attempts": media.attempts,
        "created_at": media.created_at.isoformat(),
        "finished_at": media.finished_at.isoformat() if media.finished_at else None,
    }


@bp.get("/whatsapp-media")
@require_scopes("admin")
def whatsapp_media():
    limit, before_id = _paging()
    rows = list_media(db.session, status=choice_arg("status", MEDIA_STATUSES),
                      source=text_arg("source", SOURCE_NAME_MAX), limit=limit,
                      before_id=before_id)
    return _page("media", rows, limit, media_summary)


@bp.get("/whatsapp-media/<id:media_id>")
@require_scopes("admin")
def one_whatsapp_media(media_id: int):
    return tagged(media_summary(_found(get_media, media_id, "WhatsApp media item")))


@bp.post("/whatsapp-media/<id:media_id>/retry")
@require_scopes("admin")
@idempotent()
def retry_whatsapp_media(media_id: int):
    check_if_match(media_summary(_found(get_media, media_id, "WhatsApp media item",
                                        for_update=True)))
    media = retry_media(db.session, media_id, actor=f"client:{g.client.name}")
    db.session.commit()
    return jsonify(media_summary(media)), 202


def run_summary(run: JobRun) -> dict:
    return {
        "id": run.id, "job": run.job, "trigger": run.trigger, "outcome": run.outcome,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration": run.duration, "fence": run.fence, "detail": run.detail,
        "error": run.error,
    }


def _job_or_404(name: str):
    try:
        return find_job(current_app.config, name)
    except JobNotFound:
        raise APIError(404, "not_found", "No enabled job has that name.") from None


@bp.get("/jobs")
@require_scopes("admin")
def jobs():
    return jsonify(jobs=[
        {"name": state.name, "interval": state.interval,
         "soft_time_limit": state.job.soft_time_limit, "time_limit": state.job.time_limit,
         "last_run": run_summary(state.last) if state.last else None}
        for state in job_states(db.session, current_app.config)])


@bp.get("/jobs/<name>/runs")
@require_scopes("admin")
def job_runs(name: str):
    _job_or_404(name)
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    return jsonify(runs=[run_summary(r) for r in recent_runs(db.session, name, limit)])


@bp.post("/jobs/<name>/run")
@require_scopes("admin")
@idempotent()
def run_job_now(name: str):
    """Queue a run on the worker, under the same lock and history as beat."""
    job = _job_or_404(name)
    request_run(db.session, job, "admin", f"client:{g.client.name}")
    db.session.commit()
    return jsonify(job=job.name, status="queued"), 202

"""Admin API (scope `admin`): webhook events, dead letters and replay."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from webapp.auth import require_scopes
from webapp.errors import APIError
from webapp.extensions import db
from webhooks.models import EVENT_STATUSES, WebhookEvent
from webhooks.processing import EventNotFound, list_events, replay

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")
MAX_PAGE = 200


def event_summary(event: WebhookEvent) -> dict:
    return {
        "id": event.id, "source": event.source, "event_key": event.event_key,
        "event_type": event.event_type, "status": event.status, "attempts": event.attempts,
        "last_error": event.last_error, "received_at": event.received_at.isoformat(),
        "processed_at": event.processed_at.isoformat() if event.processed_at else None,
    }


def _int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise APIError(400, "invalid_parameter", f"{name} must be an integer {low}..{high}.")
    return int(raw)


@bp.get("/webhook-events")
@require_scopes("admin")
def webhook_events():
    status = request.args.get("status")
    if status is not None and status not in EVENT_STATUSES:
        raise APIError(400, "invalid_parameter",
                       f"status must be one of {', '.join(EVENT_STATUSES)}.")
    limit = _int_arg("limit", 50, 1, MAX_PAGE)
    events = list_events(db.session, status=status, source=request.args.get("source"),
                         limit=limit, before_id=_int_arg("before_id", None, 1, 2 ** 62))
    return jsonify(events=[event_summary(e) for e in events],
                   next_before_id=events[-1].id if len(events) == limit else None)


@bp.get("/webhook-events/<int:event_id>")
@require_scopes("admin")
def webhook_event(event_id: int):
    event = db.session.get(WebhookEvent, event_id)
    if event is None:
        raise APIError(404, "not_found", "No such webhook event.")
    return jsonify(event_summary(event))


@bp.post("/webhook-events/<int:event_id>/replay")
@require_scopes("admin")
def replay_event(event_id: int):
    try:
        event = replay(db.session, event_id, actor=f"client:{g.client.name}")
    except EventNotFound:
        raise APIError(404, "not_found", "No such webhook event.") from None
    db.session.commit()
    return jsonify(id=event.id, status=event.status), 202

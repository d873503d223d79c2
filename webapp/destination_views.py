"""Destinations, the team's endpoints that Sluice's events are pushed to (deliveries/).

The admin scope manages every destination, and may give one an owner, private
networks (`allowed_networks`) and plain http. A client with `destinations:write`
manages its own, which receive only events about objects it owns, and may point only
at public https URLs: a tenant must not be able to aim Sluice at the internal network.
Another client's destination looks exactly like a missing one.
"""
from __future__ import annotations

import datetime as dt
import functools

from flask import Blueprint, g, jsonify, request

from deliveries import destinations as ops
from deliveries.models import DELIVERY_STATUSES, Destination
from store.db import utcnow
from webapp.auth import require_scopes
from webapp.errors import APIError
from webapp.extensions import db
from webapp.idempotency import idempotent
from webapp.query_args import choice_arg, int_arg

bp = Blueprint("destinations", __name__, url_prefix="/v1/admin/destinations")
MAX_PAGE = 200
ADMIN_ONLY_FIELDS = ("owner", "allowed_networks", "allow_http")


def manages_destinations(view):
    """A bearer token with `admin` (every destination) or `destinations:write` (its own
    ones); sets g.owner_scope to None or to the client's id."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        scopes = g.client.scope_set
        if "admin" in scopes:
            g.owner_scope = None
        elif "destinations:write" in scopes:
            g.owner_scope = g.client.id
        else:
            raise APIError(403, "insufficient_scope",
                           "This token lacks the scope: admin or destinations:write.")
        return view(*args, **kwargs)
    return require_scopes()(wrapper)


def _actor() -> str:
    return f"client:{g.client.name}"


def _payload(allowed: tuple[str, ...]) -> dict:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise APIError(400, "invalid_request", "Send a JSON object.")
    unknown = set(payload) - set(allowed)
    if unknown:
        raise APIError(400, "invalid_request",
                       f"Unknown fields: {', '.join(sorted(map(str, unknown)))[:200]}.")
    return payload


def _destination(destination_id: int, for_update: bool = False) -> Destination:
    try:
        return ops.get(db.session, destination_id, g.owner_scope, for_update=for_update)
    except ops.DestinationNotFound:
        raise APIError(404, "not_found", "No such destination.") from None


def _invalid(exc: ops.InvalidDestination) -> APIError:
    return APIError(400, exc.code, str(exc))


def _when(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def destination_json(destination: Destination, figures: ops.Figures | None = None) -> dict:
    body = {
        "id": destination.id, "name": destination.name, "url": destination.url,
        "events": destination.event_types, "owner_id": destination.owner_id,
        "allowed_networks": destination.allowed_networks or [],
        "allow_http": destination.allow_http, "paused": destination.paused,
        "state": destination.state, "consecutive_failures": destination.consecutive_failures,
        "failing_since": _when(destination.failing_since), "last_error": destination.last_error,
        "previous_secret_until": _when(destination.previous_secret_until)
        if destination.previous_secret else None,
        "created_at": destination.created_at.isoformat()}
    if figures is not None:
        oldest = figures.oldest_waiting
        body["figures"] = {
            "backlog": figures.backlog,
            "oldest_waiting_seconds": round((utcnow() - oldest).total_seconds(), 1)
            if oldest else None,
            "attempts_last_hour": figures.attempts_hour,
            "success_rate_last_hour": figures.success_rate_hour,
            "attempts_last_day": figures.attempts_day,
            "success_rate_last_day": figures.success_rate_day,
            "failed": figures.failed}
    return body


def delivery_json(row, attempts: list | None = None) -> dict:
    delivery, event_id, event_type = row
    body = {"id": delivery.id, "event_id": event_id, "event_type": event_type,
            "status": delivery.status, "attempts": delivery.attempts,
            "next_attempt_at": _when(delivery.next_attempt_at)
            if delivery.status == "pending" else None,
            "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
            "created_at": delivery.created_at.isoformat(),
            "finished_at": _when(delivery.finished_at)}
    if attempts is not None:
        body["attempt_log"] = [
            {"at": a.attempted_at.isoformat(), "status_code": a.status_code,
             "latency_ms": round(a.latency * 1000, 1), "succeeded": a.succeeded,
             "error": a.error, "response_excerpt": a.response_excerpt} for a in attempts]
    return body


@bp.post("")
@manages_destinations
@idempotent()
def create():
    owner_scope = g.owner_scope
    payload = _payload(("name", "url", "events", "owner", "allowed_networks", "allow_http"))
    if owner_scope is not None and any(field in payload for field in ADMIN_ONLY_FIELDS):
        raise APIError(403, "insufficient_scope",
                       "Only the admin scope sets owner, allowed_networks or allow_http.")
    owner = payload.get("owner") if owner_scope is None else owner_scope
    if owner is not None and (isinstance(owner, bool) or not isinstance(owner, int)
                              or not 1 <= owner < 2 ** 31):
        raise APIError(400, "invalid_owner", "owner is an API client's id.")
    try:
        destination, secret = ops.create(
            db.session, _actor(), name=payload.get("name"), url=payload.get("url"),
            event_types=payload.get("events"), owner_id=owner,
            allowed_networks=payload.get("allowed_networks"),
            allow_http=payload.get("allow_http", False))
    except ops.InvalidDestination as exc:
        raise _invalid(exc) from None
    db.session.commit()
    return jsonify({**destination_json(destination), "secret": secret}), 201


@bp.get("")
@manages_destinations
def list_all():
    found = ops.find(db.session, g.owner_scope)
    figures = ops.figures(db.session, [d.id for d in found])
    return jsonify(destinations=[destination_json(d, figures[d.id]) for d in found])


# One rule for the three methods: with a rule per method, werkzeug answers an id past
# BIGINT (which the converter refuses) with 405 instead of 404.
@bp.route("/<id:destination_id>", methods=["GET", "PATCH", "DELETE"])
@manages_destinations
@idempotent()
def one(destination_id: int):
    return {"GET": show, "PATCH": change, "DELETE": remove}[request.method](destination_id)


def show(destination_id: int):
    destination = _destination(destination_id)
    return jsonify(destination_json(destination,
                                    ops.figures(db.session, [destination.id])[destination.id]))


def change(destination_id: int):
    payload = _payload(("events", "url", "paused"))
    destination = _destination(destination_id, for_update=True)
    try:
        ops.change(db.session, destination, _actor(), url=payload.get("url"),
                   event_types=payload.get("events"), paused=payload.get("paused"))
    except ops.InvalidDestination as exc:
        raise _invalid(exc) from None
    db.session.commit()
    return jsonify(destination_json(destination))


def remove(destination_id: int):
    ops.remove(db.session, _destination(destination_id, for_update=True), _actor())
    db.session.commit()
    return "", 204


@bp.post("/<id:destination_id>/rotate-secret")
@manages_destinations
@idempotent()
def rotate(destination_id: int):
    payload = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(payload, dict) or set(payload) - {"grace_seconds"}:
        raise APIError(400, "invalid_request", 'Send {"grace_seconds": N} or nothing.')
    destination = _destination(destination_id, for_update=True)
    try:
        secret = ops.rotate_secret(db.session, destination, _actor(),
                                   payload.get("grace_seconds"))
    except ops.InvalidDestination as exc:
        raise _invalid(exc) from None
    db.session.commit()
    return jsonify(id=destination.id, secret=secret,
                   previous_secret_until=_when(destination.previous_secret_until))


@bp.get("/<id:destination_id>/deliveries")
@manages_destinations
def deliveries(destination_id: int):
    destination = _destination(destination_id)
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    rows = ops.deliveries(db.session, destination, status=choice_arg("status", DELIVERY_STATUSES),
                          limit=limit, before_id=int_arg("before_id", None, 1, 2 ** 62))
    attempts = ops.attempts_of(db.session, [row[0].id for row in rows])
    return jsonify(deliveries=[delivery_json(row, attempts[row[0].id]) for row in rows],
                   next_before_id=rows[-1][0].id if len(rows) == limit else None)


@bp.post("/<id:destination_id>/deliveries/<id:delivery_id>/retry")
@manages_destinations
@idempotent()
def retry(destination_id: int, delivery_id: int):
    destination = _destination(destination_id)
    try:
        delivery = ops.retry(db.session, destination, delivery_id, _actor())
    except ops.DeliveryNotFound:
        raise APIError(404, "not_found", "No such delivery for this destination.") from None
    db.session.commit()
    return jsonify(id=delivery.id, status=delivery.status), 202


def _instant(payload: dict, name: str) -> dt.datetime:
    raw = payload.get(name)
    try:
        value = dt.datetime.fromisoformat(raw) if isinstance(raw, str) and len(raw) <= 40 \
            else None
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise APIError(400, "invalid_request",
                       f"{name} is an ISO 8601 instant with its offset (2026-12-06T09:00:00Z).")
    return value


@bp.post("/<id:destination_id>/recover")
@manages_destinations
@idempotent()
def recover(destination_id: int):
    payload = _payload(("since", "until"))
    since = _instant(payload, "since")
    until = _instant(payload, "until") if "until" in payload else utcnow()
    if until <= since:
        raise APIError(400, "invalid_request", "until must be after since.")
    destination = _destination(destination_id)
    count = ops.recover(db.session, destination, _actor(), since, until)
    db.session.commit()
    return jsonify(id=destination.id, recovered=count), 202


@bp.post("/<id:destination_id>/send-test")
@manages_destinations
@idempotent()
def send_test(destination_id: int):
    destination = _destination(destination_id)
    delivery = ops.send_test(db.session, destination, _actor())
    db.session.commit()
    return jsonify(id=destination.id, delivery_id=delivery.id, status=delivery.status), 202

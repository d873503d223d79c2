"""Legal holds over HTTP (scope admin): place, list, release (store/holds.py). A subject
is named by its phone, email or customer id in the request and by its blind index
everywhere after: the answer, the audit log, the console."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from documents.operations import document_exists
from store import holds
from store.clients import client_exists
from store.holds import Hold
from webapp.auth import require_scopes
from webapp.errors import APIError
from webapp.extensions import db
from webapp.idempotency import idempotent
from webapp.query_args import choice_arg

bp = Blueprint("holds", __name__, url_prefix="/v1/admin/holds")
FIELDS = ("document", "owner", *holds.SUBJECT_KINDS, "reason")


def hold_json(hold: Hold) -> dict:
    return {"id": hold.id, "scope": hold.scope, "document_id": hold.document_id,
            "owner_id": hold.owner_id, "subject_kind": hold.subject_kind,
            "subject_index": hold.subject_index, "reason": hold.reason,
            "placed_by": hold.placed_by, "placed_at": hold.placed_at.isoformat(),
            "released_by": hold.released_by,
            "released_at": hold.released_at.isoformat() if hold.released_at else None}


def _whole(payload: dict, name: str, maximum: int) -> int | None:
    if name not in payload:
        return None
    value = payload[name]
    if isinstance(value, float) and value.is_integer():  # JSON has one number type: 5.0 is 5
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise APIError(400, "invalid_hold", f"{name} is an id (a whole number).")
    return value


def target_from(payload: dict) -> holds.Target:
    subjects = [kind for kind in holds.SUBJECT_KINDS if kind in payload]
    if len(subjects) + ("document" in payload) + ("owner" in payload) != 1:
        raise APIError(400, "invalid_hold", "A hold covers exactly one of: document, owner, "
                       f"{', '.join(holds.SUBJECT_KINDS)}.")
    value = payload.get(subjects[0]) if subjects else None
    if subjects and (not isinstance(value, str) or not 1 <= len(value) <= 320):
        raise APIError(400, "invalid_hold", f"{subjects[0]} is a text of 1 to 320 characters.")
    # documents.id is a BIGINT, api_clients.id an INTEGER
    return holds.Target(document_id=_whole(payload, "document", 2 ** 62 - 1),
                        owner_id=_whole(payload, "owner", 2 ** 31 - 1),
                        subject_kind=subjects[0] if subjects else None, subject_value=value)


@bp.post("")
@require_scopes("admin")
@idempotent()
def place():
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or set(payload) - set(FIELDS):
        raise APIError(400, "invalid_request", "Send a JSON object with one of document, "
                       f"owner, {', '.join(holds.SUBJECT_KINDS)}, and a reason.")
    target = target_from(payload)
    try:
        holds.checked_reason(payload.get("reason"))
    except holds.InvalidHold as exc:
        raise APIError(400, "invalid_hold", str(exc)) from None
    if target.document_id is not None and not document_exists(db.session, target.document_id):
        raise APIError(404, "not_found", "No such document.")
    if target.owner_id is not None and not client_exists(db.session, target.owner_id):
        raise APIError(404, "not_found", "No such API client.")
    try:
        hold = holds.place(db.session, target, payload.get("reason"),
                           f"client:{g.client.name}")
    except holds.InvalidHold as exc:
        raise APIError(400, "invalid_hold", str(exc)) from None
    db.session.commit()
    return jsonify(hold_json(hold)), 201


@bp.get("")
@require_scopes("admin")
def list_holds():
    everything = choice_arg("released", ("true", "false")) == "true"
    return jsonify(holds=[hold_json(h) for h in holds.holds(db.session, everything)])


@bp.delete("/<id:hold_id>")
@require_scopes("admin")
@idempotent()
def release(hold_id: int):
    try:
        holds.release(db.session, hold_id, f"client:{g.client.name}")
    except holds.HoldNotFound:
        raise APIError(404, "not_found", "No such active hold.") from None
    db.session.commit()
    return "", 204

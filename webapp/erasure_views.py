"""Erasure by data subject over HTTP (scope admin): privacy/erasure.py. The subject's
value is in the request only; the answer and the audit log name it by blind index."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from privacy import erasure
from store.holds import SUBJECT_KINDS
from tasks.app_state import storage
from webapp.auth import require_scopes
from webapp.errors import APIError
from webapp.extensions import db
from webapp.idempotency import idempotent

bp = Blueprint("erasures", __name__, url_prefix="/v1/admin/erasures")


def subject_from(payload) -> erasure.Subject:
    kinds = [kind for kind in SUBJECT_KINDS if kind in payload] \
        if isinstance(payload, dict) else []
    if not isinstance(payload, dict) or len(kinds) != 1 \
            or set(payload) - {*SUBJECT_KINDS, "dry_run"} \
            or not isinstance(payload.get("dry_run", True), bool):
        raise APIError(400, "invalid_request", "Send a JSON object with one of "
                       f"{', '.join(SUBJECT_KINDS)}, and dry_run (true or false).")
    try:
        return erasure.subject(kinds[0], payload[kinds[0]])
    except erasure.InvalidSubject as exc:
        raise APIError(400, "invalid_subject", str(exc)) from None


@bp.post("")
@require_scopes("admin")
@idempotent()
def erase():
    """Erase a subject; `dry_run` (the default: true) only counts."""
    payload = request.get_json(silent=True)
    subject = subject_from(payload)
    report = erasure.erase(db.session, storage(), subject, f"client:{g.client.name}",
                           dry_run=payload.get("dry_run", True))
    return jsonify(report), 200

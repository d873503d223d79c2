"""What Sluice learned, for the team's own systems to read: the event feed
(/v1/events, a gap-free cursor over store/events.py) and the read API for payments
and WhatsApp messages. Pushing the same events to the team's endpoints is the
deliveries package's (to come)."""
from __future__ import annotations

import datetime as dt
import re

from flask import Blueprint, g, jsonify, request

from payments.ledger import PAYMENT_STATUSES, payment_json
from payments.operations import find_payments, get_payment
from store import events
from webapp.auth import require_scopes
from webapp.conditional import tagged
from webapp.errors import APIError
from webapp.extensions import db
from webapp.query_args import choice_arg, int_arg, printable, text_arg
from webhooks.operations import find_messages, get_message, media_of
from whatsapp import media_json, message_json

bp = Blueprint("outcomes", __name__)
MAX_PAGE = 500
# The events of objects nobody owns (payments, messages, generic sources' deliveries),
# and the scope that reads them.
UNOWNED_BY_SCOPE = {"payments:read": "payment.", "messages:read": "whatsapp.",
                    "webhooks:read": "webhook."}
TYPES_MAX = 500
_TYPES = re.compile(r"[A-Za-z0-9_.*, ]*")


def _visibility() -> events.Visibility:
    scopes = g.client.scope_set
    if "admin" in scopes:
        return events.Visibility(all_events=True)
    return events.Visibility(
        owner_id=g.client.id if "documents:read" in scopes else None,
        unowned=tuple(prefix for scope, prefix in UNOWNED_BY_SCOPE.items() if scope in scopes))


def _types() -> list[str] | None:
    """Event types (`document.scanned`) or families (`payment.*`); a name that is no
    type matches nothing."""
    raw = request.args.get("types")
    if raw is None:
        return None
    if len(raw) > TYPES_MAX or not _TYPES.fullmatch(raw):
        raise APIError(400, "invalid_parameter",
                       "types is a comma list of event types or families (payment.*).")
    return [p.strip() for p in raw.split(",") if p.strip()]


def _cursor(name: str = "after"):
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return events.parse_cursor(raw)
    except events.InvalidCursor:
        raise APIError(400, "invalid_cursor", f"{name} is not a cursor this feed gave.") from None


@bp.get("/v1/events")
@require_scopes()
def event_feed():
    """Events after the cursor, oldest first. Keep `next_cursor` and ask again with it:
    every event comes once, none is skipped, across restarts."""
    after = _cursor()
    limit = int_arg("limit", 100, 1, MAX_PAGE)
    rows = events.read_events(db.session, _visibility(), after=after, types=_types(),
                              limit=limit)
    next_cursor = events.cursor_of(rows[-1]) if rows else (
        f"{after[0]}.{after[1]}" if after else None)
    return jsonify(events=[row.envelope() for row in rows], next_cursor=next_cursor)


def _id_cursor() -> int:
    return int_arg("after", 0, 0, 2 ** 62)


def _updated_after() -> dt.datetime | None:
    raw = request.args.get("updated_after")
    if raw is None:
        return None
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise APIError(400, "invalid_parameter", "updated_after must be an ISO 8601 time.") \
            from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


@bp.get("/v1/payments")
@require_scopes("payments:read")
def payments():
    limit = int_arg("limit", 100, 1, MAX_PAGE)
    rows = find_payments(db.session, provider=text_arg("provider", 64),
                         status=choice_arg("status", PAYMENT_STATUSES),
                         updated_after=_updated_after(), after_id=_id_cursor(), limit=limit)
    return jsonify(payments=[payment_json(row) for row in rows],
                   next_cursor=str(rows[-1].id) if len(rows) == limit else None)


@bp.get("/v1/payments/<provider>/<reference>")
@require_scopes("payments:read")
def payment(provider: str, reference: str):
    row = get_payment(db.session, _name_or_404(provider, 64, "payment"),
                      _name_or_404(reference, 255, "payment"))
    if row is None:
        raise APIError(404, "not_found", "No such payment.")
    return tagged(payment_json(row))


def _name_or_404(value: str, max_length: int, noun: str) -> str:
    """A path segment that no stored name can match (too long, control characters:
    PostgreSQL refuses NUL in text) is simply not found."""
    if not printable(value, max_length):
        raise APIError(404, "not_found", f"No such {noun}.")
    return value


def _message(row, media) -> dict:
    return {**message_json(row), "media": [media_json(item) for item in media]}


@bp.get("/v1/whatsapp/messages")
@require_scopes("messages:read")
def messages():
    limit = int_arg("limit", 100, 1, MAX_PAGE)
    rows = find_messages(db.session, source=text_arg("source", 64), after_id=_id_cursor(),
                         limit=limit)
    media = media_of(db.session, [row.id for row in rows])
    return jsonify(messages=[_message(row, media.get(row.id, [])) for row in rows],
                   next_cursor=str(rows[-1].id) if len(rows) == limit else None)


@bp.get("/v1/whatsapp/messages/<wamid>")
@require_scopes("messages:read")
def message(wamid: str):
    row = get_message(db.session, _name_or_404(wamid, 255, "message"))
    if row is None:
        raise APIError(404, "not_found", "No such message.")
    return tagged(_message(row, media_of(db.session, [row.id]).get(row.id, [])))

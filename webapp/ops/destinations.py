"""The console's Destinations pages: each destination's state, success rates, backlog
and last error; per destination its deliveries with every attempt; and the buttons
(pause, resume, retry, recover a range, rotate the secret, send a test), which call
the same operations as the admin API (deliveries/destinations.py), audited.

A rotated secret is shown on the page the POST answers, never put in the session
(Flask's session is a signed cookie, not an encrypted one).
"""
from __future__ import annotations

import datetime as dt

from flask import abort, flash, redirect, render_template, request, url_for

from deliveries import destinations as ops
from deliveries.models import DELIVERY_STATUSES
from store.db import utcnow
from webapp.extensions import db
from webapp.ops import actor, bp, operator_required

PAGE = 50
RECOVER_HOURS_MAX = 24 * 30


def _destination(destination_id: int, for_update: bool = False):
    try:
        return ops.get(db.session, destination_id, for_update=for_update)
    except ops.DestinationNotFound:
        abort(404)


def _back(destination_id: int):
    return redirect(url_for("ops.destination", destination_id=destination_id), code=303)


@bp.get("/destinations")
@operator_required
def destinations():
    found = ops.find(db.session)
    return render_template("ops/destinations.html", title="Destinations", destinations=found,
                           figures=ops.figures(db.session, [d.id for d in found]), now=utcnow())


@bp.get("/destinations/<id:destination_id>")
@operator_required
def destination(destination_id: int):
    found = _destination(destination_id)
    status = request.args.get("status")
    return _page(found, status if status in DELIVERY_STATUSES else None)


def _page(found, status: str | None, secret: str | None = None):
    """A destination's page: its figures, its deliveries (of one status, or all) with
    their attempts, and a secret just rotated, shown this once."""
    rows = ops.deliveries(db.session, found, status=status, limit=PAGE)
    return render_template(
        "ops/destination.html", title=f"Destination {found.name}", destination=found,
        figures=ops.figures(db.session, [found.id])[found.id], deliveries=rows,
        attempts=ops.attempts_of(db.session, [row[0].id for row in rows]),
        statuses=DELIVERY_STATUSES, status=status, now=utcnow(), secret=secret)


@bp.post("/destinations/<id:destination_id>/pause")
@operator_required
def destination_pause(destination_id: int):
    paused = request.form.get("paused") == "1"
    ops.change(db.session, _destination(destination_id, for_update=True), actor(),
               paused=paused)
    db.session.commit()
    flash("Paused: deliveries wait until it is resumed." if paused
          else "Resumed: its backlog goes out oldest first.")
    return _back(destination_id)


@bp.post("/destinations/<id:destination_id>/send-test")
@operator_required
def destination_send_test(destination_id: int):
    delivery = ops.send_test(db.session, _destination(destination_id), actor())
    db.session.commit()
    flash(f"Test delivery {delivery.id} queued.")
    return _back(destination_id)


@bp.post("/destinations/<id:destination_id>/deliveries/<id:delivery_id>/retry")
@operator_required
def delivery_retry(destination_id: int, delivery_id: int):
    try:
        ops.retry(db.session, _destination(destination_id), delivery_id, actor())
    except ops.DeliveryNotFound:
        abort(404)
    db.session.commit()
    flash(f"Delivery {delivery_id} is due again.")
    return _back(destination_id)


@bp.post("/destinations/<id:destination_id>/recover")
@operator_required
def destination_recover(destination_id: int):
    raw = request.form.get("hours", "")
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= RECOVER_HOURS_MAX):
        flash(f"Hours is a whole number from 1 to {RECOVER_HOURS_MAX}.", "error")
        return _back(destination_id)
    until = utcnow()
    count = ops.recover(db.session, _destination(destination_id), actor(),
                        until - dt.timedelta(hours=int(raw)), until)
    db.session.commit()
    flash(f"{count} failed deliveries of the last {raw} hours are due again.")
    return _back(destination_id)


@bp.post("/destinations/<id:destination_id>/rotate")
@operator_required
def destination_rotate(destination_id: int):
    found = _destination(destination_id, for_update=True)
    secret = ops.rotate_secret(db.session, found, actor())
    db.session.commit()
    return _page(found, None, secret)

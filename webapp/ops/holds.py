"""The console's Holds page: every legal hold, active and released, with who placed it
and why; a subject shows as its blind index, never its phone or email. An operator
may release one (audited, through store/holds.py as the admin API and the CLI do);
placing one is the admin API's or the CLI's (`flask holds place`)."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for

from store import holds
from webapp.extensions import db
from webapp.ops import actor, bp, operator_required


@bp.get("/holds")
@operator_required
def legal_holds():
    return render_template("ops/holds.html", title="Legal holds",
                           holds=holds.holds(db.session, include_released=True))


@bp.post("/holds/<id:hold_id>/release")
@operator_required
def release_hold(hold_id: int):
    try:
        holds.release(db.session, hold_id, actor())
    except holds.HoldNotFound:
        flash(f"Hold {hold_id} is not active.", "error")
    else:
        db.session.commit()
        flash(f"Hold {hold_id} released: what it covered may be deleted again.")
    return redirect(url_for("ops.legal_holds"), code=303)

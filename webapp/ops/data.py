"""The console's Data page: find what Sluice holds about one person (by the blind index
of their phone, email or customer id), erase it after a confirmation, and see the data
keys and legal holds. Finding and erasing go through privacy/erasure.py, as the admin
API and `flask erasure` do, and both are audited.

The person's value travels in POST bodies only, never in a URL (which logs and browser
histories keep); pages show it back only in the form the operator typed it into."""
from __future__ import annotations

from flask import render_template, request

from privacy import erasure
from store import holds, sealing
from store.holds import SUBJECT_KINDS
from tasks.app_state import storage
from webapp.extensions import db
from webapp.ops import actor, bp, operator_required


def _page(**context):
    ring = sealing.ring()
    return render_template("ops/data.html", title="Data", kinds=SUBJECT_KINDS,
                           key_ids=ring.ids, primary=ring.primary,
                           active_holds=holds.holds(db.session), **context)


@bp.get("/data")
@operator_required
def data():
    return _page()


@bp.post("/data")
@operator_required
def find_or_erase():
    kind, value = request.form.get("kind", ""), request.form.get("value", "")
    try:
        subject = erasure.subject(kind, value)
    except erasure.InvalidSubject as exc:
        return _page(kind=kind, value=value, error=str(exc)), 400
    confirmed = request.form.get("confirm") == "erase"
    report = erasure.erase(db.session, storage(), subject, actor(),
                           dry_run=not confirmed)
    return _page(kind=kind, value=value, report=report)

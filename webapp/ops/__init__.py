"""The ops console at /ops: one page that says whether anything is stuck, and the
pages that fix it (replay, rescan, run a job now, send a test delivery).

Server-rendered (Jinja, one stylesheet, one small script, all served from here).
Operators sign in by pasting an API token with the `admin` scope, which opens a
session on the server (store/clients.py: OpsSession, ended by signing out) named by
a server-signed session cookie (HttpOnly, SameSite=Strict, Secure over https,
OPS_SESSION_HOURS long, path /ops). Every POST carries Flask-WTF's CSRF token, every
page a Content-Security-Policy with no inline script or style, and every action is
written to the audit log under the operator's client name, as the admin API does.
Untrusted text (bodies, filenames, event keys) is escaped by Jinja, and its
invisible characters (bidi overrides, zero-width, controls) are shown as code
points so that what an operator reads is what is stored.
"""
from __future__ import annotations

import datetime as dt
import functools
import re

from flask import Blueprint, Flask, g, redirect, render_template, request, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import Markup

from store.clients import ops_session_client

bp = Blueprint("ops", __name__, url_prefix="/ops", template_folder="templates",
               static_folder="static")
csrf = CSRFProtect()
CONTENT_SECURITY_POLICY = ("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                           "form-action 'self'; object-src 'none'")
# Characters that change how text looks without being seen, all shown as code points:
# C0/C1 controls but newline and tab; Unicode's Default_Ignorable_Code_Point (which
# holds every Bidi_Control: U+061C, U+200E-200F, U+202A-202E, U+2066-2069), as listed
# in DerivedCoreProperties.txt (Python's unicodedata does not carry the property);
# and every other format character (category Cf), such as U+FFF9's annotations.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"
    # Default_Ignorable_Code_Point
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
    # the rest of category Cf
    "\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\ufff9-\ufffb\U000110bd"
    "\U000110cd\U00013430-\U0001343f]")


class OpsSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, for the console's pages only, marked Secure
    whenever the page came over https (the front's X-Forwarded-Proto, through
    ProxyFix), not by a fixed setting. Every other route (webhooks, the API) gets
    Flask's null session: no signer to build on the hot path, and nothing there can
    write to a session by mistake."""

    def open_session(self, app: Flask, request):
        if not request.path.startswith(bp.url_prefix):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


def reveal_invisible(value):
    """Jinja's finalize: every string shown with its invisible characters made visible."""
    if isinstance(value, str) and not isinstance(value, Markup) and _INVISIBLE.search(value):
        return _INVISIBLE.sub(lambda m: f"\u27e6U+{ord(m.group()):04X}\u27e7", value)
    return value


def operator_required(view):
    """A signed-in operator: a live server-side session (not signed out, not lapsed)
    whose client is not revoked and is admin."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        from flask import session

        from webapp.extensions import db

        session_id = session.get("sid")
        client = ops_session_client(db.session, session_id) \
            if isinstance(session_id, str) else None
        if client is None or "admin" not in client.scope_set:
            session.clear()
            return redirect(url_for("ops.sign_in", next=request.full_path), code=303)
        g.operator = client
        return view(*args, **kwargs)
    return wrapper


def actor() -> str:
    """How the audit log names the signed-in operator: as the admin API names a client."""
    return f"client:{g.operator.name}"


@bp.before_request
def _protect_posts():
    if request.method == "POST":
        csrf.protect()  # CSRFError (400) before the view runs: nothing changes


@bp.after_request
def _page_headers(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    # Over https Flask-WTF also wants a same-origin Referer on every POST; the API's
    # no-referrer would keep browsers from sending one.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError):
    return render_template("ops/error.html", title="Refused",
                           message="This form has expired or did not come from this console "
                                   "(no valid CSRF token). Nothing was changed; go back, "
                                   "reload the page and try again."), 400


def init_ops(app: Flask) -> None:
    from webapp.ops import data, destinations, holds, views  # noqa: F401 - the routes on bp

    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)  # the API uses bearer tokens
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # as long as the session lasts
    app.config.update(
        SESSION_COOKIE_NAME="sluice_ops", SESSION_COOKIE_PATH="/ops",
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=app.config["OPS_SESSION_HOURS"]))
    app.session_interface = OpsSessionInterface()
    app.jinja_env.finalize = reveal_invisible
    csrf.init_app(app)
    app.register_blueprint(bp)
    app.add_url_rule("/", "root", lambda: redirect(url_for("ops.overview"), code=302))

"""The console's pages and actions. Views read and call domain functions; every action
is a POST (CSRF-checked in webapp/ops/__init__.py), audited, then redirects (303)."""
from __future__ import annotations

import datetime as dt
import json
import re

from flask import (
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from cron.lock import held_for
from cron.operations import JobNotFound, find_job, recent_runs, request_run
from documents.imports import ReportExpired, error_report, import_origins, progress
from documents.models import CLEAN, DOCUMENT_STATUSES, Document, Import, tags_of
from documents.operations import (
    DocumentFilter,
    find_documents,
    recent_imports,
    request_rescan,
    rescan_pending,
)
from documents.reports import csv_lines
from documents.text import index as text_index
from store import audit
from store.clients import ApiClient, client_names, end_ops_session, open_ops_session
from store.redaction import redact_value
from tasks.app_state import redis_client
from tasks.app_state import sources as configured_sources
from webapp import readable
from webapp.auth import checked_token
from webapp.document_views import serve_preview
from webapp.extensions import db
from webapp.import_views import ERRORS_HEADER, EXPIRED
from webapp.ops import actor, bp, operator_required
from webapp.ops.overview import forget, gather
from webapp.rate_limits import OverBudget
from webapp.webhook_views import send_test_delivery
from webhooks.models import EVENT_STATUSES, WebhookEvent
from webhooks.operations import (
    EventFilter,
    EventNotFound,
    MediaNotFound,
    count_events,
    effects,
    find_events,
    list_media,
    replay,
    replay_matching,
    retry_media,
)
from whatsapp import document_origins, documents_from
from whatsapp.models import MEDIA_STATUSES

PAGE = 50
MAX_TEXT = 200


def _text(name: str) -> str | None:
    value = request.args.get(name, "").strip()
    return value[:MAX_TEXT] or None


def _choice(name: str, allowed) -> str | None:
    value = request.args.get(name) or None
    return value if value in allowed else None


def _number(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


EVENT_FILTERS = ("source", "status", "type", "from", "to")
DOCUMENT_FILTERS = ("owner", "status", "source", "q")
MEDIA_FILTERS = ("status", "source")


def _filters(names: tuple[str, ...]) -> dict[str, str]:
    """The page's own filters from the query, for its links: never the whole query,
    whose other names (`_method`, `_external`, `before_id`) url_for would obey."""
    return {name: request.args[name][:MAX_TEXT] for name in names if request.args.get(name)}


def _day(name: str) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


# --- sign-in ----------------------------------------------------------------------------------

@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Paste an admin token; failures spend the budgets bad bearer tokens spend."""
    if request.method == "GET":
        return render_template("ops/sign_in.html", title="Sign in")
    try:
        client = checked_token(request.form.get("token", "").strip())
    except OverBudget as exc:
        return render_template("ops/sign_in.html", title="Sign in",
                               error="Too many failed sign-ins from here; wait a minute and "
                                     "try again."), 429, exc.headers
    if client is None:
        return render_template("ops/sign_in.html", title="Sign in",
                               error="That token is not valid."), 401
    if "admin" not in client.scope_set:
        return render_template("ops/sign_in.html", title="Sign in",
                               error="That token lacks the admin scope."), 403
    session.clear()
    session.permanent = True
    session["sid"] = open_ops_session(db.session, client.id,
                                      current_app.permanent_session_lifetime)
    audit.record(db.session, f"client:{client.name}", "ops.sign_in", "api_client", client.id)
    db.session.commit()
    target = request.args.get("next", "")
    return redirect(target if target.startswith("/ops") and "//" not in target
                    else url_for("ops.overview"), code=303)


@bp.post("/sign-out")
@operator_required
def sign_out():
    end_ops_session(db.session, session["sid"])
    audit.record(db.session, actor(), "ops.sign_out", "api_client", g.operator.id)
    db.session.commit()
    session.clear()
    return redirect(url_for("ops.sign_in"), code=303)


# --- overview ---------------------------------------------------------------------------------

@bp.get("/")
@operator_required
def overview():
    return render_template("ops/overview.html", title="Overview", o=gather(), refresh=10)


# --- events -----------------------------------------------------------------------------------

def _event_filter() -> EventFilter:
    received_to = _day("to")
    return EventFilter(source=_text("source"), status=_choice("status", EVENT_STATUSES),
                       event_type=_text("type"), received_from=_day("from"),
                       received_to=received_to + dt.timedelta(days=1) if received_to else None)


@bp.get("/events")
@operator_required
def events():
    which = _event_filter()
    rows = find_events(db.session, which, limit=PAGE, before_id=_number("before_id"))
    return render_template(
        "ops/events.html", title="Events", events=rows, which=which, statuses=EVENT_STATUSES,
        sources=sorted(configured_sources()), args=_filters(EVENT_FILTERS),
        next_before=rows[-1].id if len(rows) == PAGE else None, refresh=15)


@bp.get("/events/<id:event_id>")
@operator_required
def event(event_id: int):
    row = db.session.get(WebhookEvent, event_id) or abort(404)
    body = None
    if row.body is not None:
        try:
            body = json.dumps(redact_value("", json.loads(row.body)), indent=2,
                              ensure_ascii=False)[:200_000]
        except (ValueError, RecursionError):
            body = redact_value("", row.body.decode("utf-8", "replace"))[:200_000]
    return render_template("ops/event.html", title=f"Event {row.id}", event=row, body=body,
                           headers=redact_value("", row.headers or {}),
                           changed=effects(db.session, row),
                           trail=audit.trail(db.session, "webhook_event", row.id))


@bp.post("/events/<id:event_id>/replay")
@operator_required
def replay_event(event_id: int):
    try:
        replay(db.session, event_id, actor())
    except EventNotFound:
        abort(404)
    db.session.commit()
    forget()
    flash(f"Event {event_id} queued for its handler again.")
    return redirect(url_for("ops.event", event_id=event_id), code=303)


@bp.route("/events/replay", methods=["GET", "POST"])
@operator_required
def replay_all():
    """GET: what would be replayed (count, cap); POST: replay it."""
    which = _event_filter()
    cap = current_app.config["OPS_REPLAY_CAP"]
    if request.method == "GET":
        return render_template("ops/replay_all.html", title="Replay matching events",
                               which=which, count=count_events(db.session, which), cap=cap,
                               args=_filters(EVENT_FILTERS),
                               trail=audit.trail(db.session, "webhook_event", "*", limit=20))
    replayed = replay_matching(db.session, which, cap, actor())
    db.session.commit()
    forget()
    flash(f"{replayed} event(s) queued for their handlers again.")
    return redirect(url_for("ops.events", **_filters(EVENT_FILTERS)), code=303)


# --- documents --------------------------------------------------------------------------------

@bp.get("/documents")
@operator_required
def documents():
    """Newest first; with `q`, a search of their text (best first, one page, each with
    its snippet)."""
    source, words = _text("source"), text_index.query_words(_text("q") or "")
    which = DocumentFilter(owner_name=_text("owner"), status=_choice("status", DOCUMENT_STATUSES),
                           among=documents_from(source) if source else None,
                           words=tuple(words), search_config=text_index.text_search_config(
                               current_app.config["OCR_LANGUAGES"]))
    rows = find_documents(db.session, which, limit=PAGE,
                          before_id=None if words else _number("before_id"))
    owners = client_names(db.session, {d.owner_id for d in rows})
    bodies = text_index.bodies(db.session, [d.id for d in rows]) if words else {}
    return render_template(
        "ops/documents.html", title="Documents", documents=rows, owners=owners,
        origins=document_origins(db.session, [d.id for d in rows]),
        imported=import_origins(db.session, [d.id for d in rows]), statuses=DOCUMENT_STATUSES,
        snippets={d.id: text_index.snippet_parts(bodies.get(d.id), words) for d in rows},
        args=_filters(DOCUMENT_FILTERS),
        next_before=rows[-1].id if len(rows) == PAGE and not words else None,
        refresh=None if words else 5)


@bp.get("/documents/<id:document_id>")
@operator_required
def document(document_id: int):
    row = db.session.get(Document, document_id) or abort(404)
    owner = db.session.get(ApiClient, row.owner_id)
    return render_template("ops/document.html", title=f"Document {row.id}", document=row,
                           owner=owner.name if owner else row.owner_id,
                           origin=document_origins(db.session, [row.id]).get(row.id),
                           imported=import_origins(db.session, [row.id]).get(row.id),
                           tags=tags_of(db.session, [row.id]).get(row.id, []),
                           trail=audit.trail(db.session, "document", row.id), refresh=5)


@bp.get("/documents/<id:document_id>/preview")
@operator_required
def document_preview(document_id: int):
    row = db.session.get(Document, document_id)
    if row is None or row.status != CLEAN or not row.has_preview:
        abort(404)
    return serve_preview(row)


@bp.post("/documents/<id:document_id>/rescan")
@operator_required
def rescan(document_id: int):
    row = db.session.get(Document, document_id) or abort(404)
    request_rescan(db.session, row, actor())
    db.session.commit()
    forget()
    flash(f"Document {document_id} queued for a new scan.")
    return redirect(url_for("ops.document", document_id=document_id), code=303)


@bp.post("/documents/rescan-pending")
@operator_required
def rescan_all_pending():
    """Queue a scan for every document still waiting for its first one (a scanner that
    was missing has appeared, or their scan messages were lost), up to OPS_REPLAY_CAP."""
    queued = rescan_pending(db.session, dt.timedelta(0), current_app.config["OPS_REPLAY_CAP"],
                            actor())
    db.session.commit()
    forget()
    flash(f"{queued} pending document(s) queued for a scan." if queued
          else "No document is waiting for a scan.")
    return redirect(url_for("ops.documents", status="pending_scan"), code=303)


# --- imports ----------------------------------------------------------------------------------

@bp.get("/imports")
@operator_required
def imports():
    rows = recent_imports(db.session, PAGE)
    return render_template("ops/imports.html", title="Imports",
                           imports=[progress(db.session, job) for job in rows], refresh=5)


@bp.get("/imports/<id:import_id>")
@operator_required
def import_detail(import_id: int):
    job = db.session.get(Import, import_id) or abort(404)
    shown = progress(db.session, job)
    return render_template("ops/import.html", title=f"Import {job.id}", job=shown,
                           refresh=2 if shown["status"] in ("queued", "running") else None)


@bp.get("/imports/<id:import_id>/errors.csv")
@operator_required
def import_errors(import_id: int):
    job = db.session.get(Import, import_id) or abort(404)
    try:
        lines = list(csv_lines(ERRORS_HEADER, error_report(db.session, job)))
    except ReportExpired:
        abort(410, EXPIRED)
    return Response(lines, mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=import-{import_id}-errors.csv"})


# --- jobs -------------------------------------------------------------------------------------

@bp.get("/jobs")
@operator_required
def jobs():
    return render_template("ops/jobs.html", title="Jobs", jobs=gather()["jobs"], refresh=10)


def _job_or_404(name: str):
    try:
        return find_job(current_app.config, name)
    except JobNotFound:
        abort(404)


@bp.get("/jobs/<name>")
@operator_required
def job(name: str):
    found = _job_or_404(name)
    return render_template(
        "ops/job.html", title=f"Job {name}", job=found,
        runs=recent_runs(db.session, name, limit=50),
        held_for=held_for(redis_client(), name, current_app.config["REDIS_KEY_PREFIX"]),
        refresh=5)


@bp.post("/jobs/<name>/run")
@operator_required
def run_job(name: str):
    """Queued on the worker under the same lock and history as beat."""
    found = _job_or_404(name)
    request_run(db.session, found, "ops", actor())
    db.session.commit()
    forget()
    flash(f"{found.name} queued; its run appears below when the worker takes it.")
    return redirect(url_for("ops.job", name=found.name), code=303)


# --- WhatsApp media ---------------------------------------------------------------------------

@bp.get("/media")
@operator_required
def media():
    rows = list_media(db.session, status=_choice("status", MEDIA_STATUSES),
                      source=_text("source"), limit=PAGE, before_id=_number("before_id"))
    fetching = sorted(name for name, source in configured_sources().items()
                      if source.media is not None)
    return render_template("ops/media.html", title="WhatsApp media", media=rows,
                           fetching=fetching, statuses=MEDIA_STATUSES,
                           args=_filters(MEDIA_FILTERS),
                           next_before=rows[-1].id if len(rows) == PAGE else None)


@bp.post("/media/<id:media_id>/retry")
@operator_required
def media_retry(media_id: int):
    try:
        retry_media(db.session, media_id, actor())
    except MediaNotFound:
        abort(404)
    db.session.commit()
    forget()
    flash(f"Media item {media_id} queued to be fetched again.")
    return redirect(request.referrer if (request.referrer or "").startswith(request.host_url)
                    else url_for("ops.media"), code=303)


# --- sources ----------------------------------------------------------------------------------

@bp.get("/sources")
@operator_required
def sources():
    return render_template("ops/sources.html", title="Sources",
                           sources=configured_sources().values())


@bp.post("/sources/<name>/test")
@operator_required
def send_test(name: str):
    source = configured_sources().get(name) or abort(404)
    if not source.can_verify:
        names = ", ".join(source.secrets_env) or "secrets_env"
        flash(f"{name} has no secret: set {names} for the service. Nothing was sent.", "error")
        return redirect(url_for("ops.sources"), code=303)
    # End this request's transaction first: on SQLite it holds the database's one write
    # lock (BEGIN IMMEDIATE), which the delivery's own insert would wait on.
    db.session.commit()
    status, answer = send_test_delivery(source)
    audit.record(db.session, actor(), "webhook.test_delivery", "webhook_source", name,
                 {"status": status, "event_id": answer.get("id")})
    db.session.commit()
    forget()
    if answer.get("id"):
        flash(f"Test delivery answered {status} ({answer.get('status')}).")
        return redirect(url_for("ops.event", event_id=answer["id"]), code=303)
    flash(f"Test delivery answered {status}: {answer.get('error', {}).get('message', '')}",
          "error")
    return redirect(url_for("ops.sources"), code=303)


@bp.app_template_filter("ago")
def ago(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


bp.add_app_template_filter(readable.when, "when")
bp.add_app_template_filter(readable.size, "size")


_CLIENT_ID = re.compile(r"client:(\d+)")


@bp.app_template_filter("who")
def who(actor: str) -> str:
    """The audit log's actor with a client's name where it was recorded by id (the
    domain records `client:<id>`, the API and console `client:<name>`)."""
    match = _CLIENT_ID.fullmatch(actor or "")
    if match is None:
        return actor
    names = g.setdefault("_client_names", {})
    client_id = int(match.group(1))
    if client_id not in names:
        client = db.session.get(ApiClient, client_id)
        names[client_id] = client.name if client else None
    return f"client:{names[client_id]}" if names[client_id] else actor


@bp.app_context_processor
def _operator():
    return {"operator": g.get("operator")}

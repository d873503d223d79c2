"""Bulk imports over HTTP: accept an archive, show progress, serve the error report."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.datastructures import FileStorage

from documents.archives import UnsafeArchive
from documents.deletion import ImportRunning, UnderHold, delete_import, release_blobs
from documents.imports import (
    MANIFEST_MAX_BYTES,
    ImportSettings,
    ReportExpired,
    check_upload,
    create_import,
    error_report,
    manifest_kind,
    progress,
)
from documents.ingest import Spooled
from documents.manifests import InvalidManifest
from documents.models import Import
from documents.reports import csv_lines
from documents.sniffing import Rejected
from store import tracing
from tasks.app_state import storage
from webapp.auth import owned_or_404, require_scopes
from webapp.conditional import check_if_match, tagged
from webapp.errors import APIError
from webapp.extensions import db
from webapp.idempotency import idempotent
from webapp.query_args import choice_arg
from webapp.uploads import check_digest, part_sha256, spooled_files

bp = Blueprint("imports", __name__)
ERRORS_HEADER = ("row", "manifest_row", "entry", "code", "message")
EXPIRED = ("This import's rows were removed RETENTION_IMPORT_ROWS_DAYS after it finished; "
           "its counts remain on the import.")


def _received() -> tuple[Spooled, FileStorage | None]:
    """The archive, spooled and checked against the client's digest, and the manifest
    part if any. Read once per request: the Idempotency-Key fingerprint asks first."""
    if "received_import" not in g:
        files = spooled_files(current_app.config["IMPORT_MAX_BYTES"] + MANIFEST_MAX_BYTES)
        archive_part = files.get("archive")
        if archive_part is None:
            raise APIError(400, "missing_file",
                           "Send the ZIP archive as multipart field 'archive'.")
        archive = archive_part.stream.finish()
        check_digest(part_sha256(archive_part), archive)
        g.received_import = archive, files.get("manifest")
    return g.received_import


def _received_fingerprint() -> str:
    archive, manifest_part = _received()
    if manifest_part is None:
        return archive.sha256
    manifest = manifest_part.stream.finish()
    return "\n".join((archive.sha256, manifest.sha256, manifest_part.filename or "",
                      manifest_part.mimetype))


@bp.post("/v1/imports")
@require_scopes("imports:write")
@idempotent(body=_received_fingerprint)
def create():
    archive, manifest_part = _received()
    manifest = kind = None
    try:
        if manifest_part is not None:
            manifest = manifest_part.stream.finish()
            if manifest.size > MANIFEST_MAX_BYTES:
                raise APIError(413, "payload_too_large",
                               f"The manifest exceeds {MANIFEST_MAX_BYTES} bytes.")
            kind = manifest_kind(manifest, manifest_part.filename, manifest_part.mimetype)
        check_upload(storage(), archive, manifest, kind,
                     ImportSettings.from_config(current_app.config).limits)
    except Rejected as exc:
        raise APIError(exc.status, exc.code, f"Manifest: {exc}") from None
    except (UnsafeArchive, InvalidManifest) as exc:
        status = 415 if exc.code == "invalid_archive" else 400
        raise APIError(status, exc.code, str(exc)) from None
    job, created = create_import(db.session, storage(), g.client.id, archive, manifest, kind)
    # The answer is read in the transaction that records the import: once committed, a
    # worker may start it within OUTBOX_POLL_INTERVAL, and a job row read before its
    # rows were counted would say queued with work already done.
    body = progress(db.session, job)
    db.session.commit()
    tracing.annotate(import_id=job.id)
    return jsonify(body), 202 if created else 200


# One rule for both methods: with a rule per method, werkzeug answers an id past
# BIGINT (which the converter refuses) with 405 instead of 404.
@bp.route("/v1/imports/<id:import_id>", methods=["GET", "DELETE"])
@require_scopes("imports:write")
@idempotent()
def one(import_id: int):
    if request.method == "DELETE":
        return _delete(import_id)
    return tagged(progress(db.session, owned_or_404(Import, import_id, "import")))


def _delete(import_id: int):
    """The owner's deletion of an import's records, and with ?documents=true of the
    documents it made: 204, then 404. 409 while it is queued or running."""
    with_documents = choice_arg("documents", ("true", "false")) == "true"
    job = owned_or_404(Import, import_id, "import", for_update=True)
    check_if_match(progress(db.session, job))
    try:
        hashes = delete_import(db.session, job, f"client:{g.client.name}", with_documents)
    except ImportRunning:
        raise APIError(409, "import_running", "The import is still queued or running; "
                       "delete it once it has finished.") from None
    except UnderHold as exc:
        raise APIError(409, "legal_hold", f"A legal hold covers {len(exc.document_ids)} of "
                       "its documents: nothing was deleted.") from None
    db.session.commit()
    release_blobs(db.session, storage(), hashes)
    return "", 204


@bp.get("/v1/imports/<id:import_id>/errors.csv")
@require_scopes("imports:write")
def errors_csv(import_id: int):
    job = owned_or_404(Import, import_id, "import")
    # Built before the response: the request's session closes at teardown. The
    # report is bounded by IMPORT_MAX_ENTRIES (one line per entry or manifest row).
    try:
        lines = list(csv_lines(ERRORS_HEADER, error_report(db.session, job)))
    except ReportExpired:
        raise APIError(410, "report_expired", EXPIRED) from None
    return Response(lines, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="import-{job.id}-errors.csv"'})

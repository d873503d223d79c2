"""Documents over HTTP: upload, list, read, signed download links."""
from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from flask import (Blueprint, Flask, Request, current_app, g, jsonify, request, send_file,
                   url_for)
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from documents.ingest import HashingSpool, TooLarge, create_document
from documents.models import CLEAN, DOCUMENT_STATUSES, Document
from documents.sniffing import DEFAULT_ALLOWLIST, Rejected
from documents.storage import LocalStorage
from webapp.auth import require_scopes
from webapp.errors import APIError
from webapp.extensions import db
from webapp.query_args import choice_arg, int_arg
from webhooks import audit

bp = Blueprint("documents", __name__)
PAGE_SIZE = 50
MULTIPART_OVERHEAD = 1024 * 1024
UPLOAD_READ_SIZE = 1024 * 1024


class UploadRequest(Request):
    """Streams a document upload's file part straight into a HashingSpool."""

    def make_form_data_parser(self):
        parser = super().make_form_data_parser()
        if self.endpoint == "documents.upload":
            # werkzeug's pure-Python multipart parser costs per read; 64 KB reads
            # made it the bottleneck of large uploads (bench/documents).
            parser.buffer_size = UPLOAD_READ_SIZE
        return parser

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        if self.endpoint != "documents.upload":
            return super()._get_file_stream(total_content_length, content_type, filename,
                                            content_length)
        spool = HashingSpool(_storage(), current_app.config["DOCUMENT_MAX_BYTES"])
        g.setdefault("upload_spools", []).append(spool)
        return spool


def _discard_spools(_exc) -> None:
    # Whatever happened to the request, no temp file outlives it.
    for spool in g.pop("upload_spools", []):
        spool.discard()


def init_documents(app: Flask) -> None:
    app.request_class = UploadRequest
    app.register_blueprint(bp)
    app.teardown_request(_discard_spools)


def _storage() -> LocalStorage:
    return LocalStorage(current_app.config["STORAGE_DIR"])


def _allowlist() -> tuple[str, ...]:
    configured = current_app.config["DOCUMENT_ALLOWED_TYPES"]
    return tuple(t.strip() for t in configured.split(",") if t.strip()) or DEFAULT_ALLOWLIST


def _links() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="document-download")


def document_json(document: Document) -> dict:
    return {"id": document.id, "sha256": document.sha256, "size": document.size,
            "mime_type": document.mime_type, "filename": document.filename,
            "status": document.status, "created_at": document.created_at.isoformat(),
            "scanned_at": document.scanned_at.isoformat() if document.scanned_at else None}


def _own_document(document_id: int) -> Document:
    document = db.session.scalar(select(Document).where(
        Document.id == document_id, Document.owner_id == g.client.id))
    if document is None:  # another owner's id looks exactly like a missing one
        raise APIError(404, "not_found", "No such document.")
    return document


@bp.post("/v1/documents")
@require_scopes("documents:write")
def upload():
    cap = current_app.config["DOCUMENT_MAX_BYTES"]
    request.max_content_length = cap + MULTIPART_OVERHEAD  # enforced while streaming
    try:
        upload_file = request.files.get("file")
    except TooLarge as exc:
        raise APIError(413, "payload_too_large", str(exc)) from None
    if upload_file is None or not isinstance(upload_file.stream, HashingSpool):
        raise APIError(400, "missing_file", "Send the document as multipart field 'file'.")
    spooled = upload_file.stream.finish()
    try:
        document, created = create_document(
            db.session, _storage(), g.client.id, spooled, upload_file.filename,
            upload_file.mimetype, _allowlist())
    except Rejected as exc:
        raise APIError(exc.status, exc.code, str(exc)) from None
    db.session.commit()
    return jsonify(document_json(document)), 201 if created else 200


@bp.get("/v1/documents")
@require_scopes("documents:read")
def list_documents():
    status = choice_arg("status", DOCUMENT_STATUSES)
    page = int_arg("page", 1, 1, 100000)
    query = select(Document).where(Document.owner_id == g.client.id)
    if status:
        query = query.where(Document.status == status)
    rows = db.session.scalars(query.order_by(Document.id.desc())
                              .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    return jsonify(documents=[document_json(d) for d in rows], page=page)


@bp.get("/v1/documents/<int:document_id>")
@require_scopes("documents:read")
def get_document(document_id: int):
    return jsonify(document_json(_own_document(document_id)))


@bp.post("/v1/documents/<int:document_id>/download-url")
@require_scopes("documents:read")
def download_url(document_id: int):
    document = _own_document(document_id)
    if document.status != CLEAN:
        raise APIError(409, "not_clean", f"The document is {document.status}; only clean "
                       "documents can be downloaded.")
    ttl = current_app.config["DOWNLOAD_LINK_TTL"]
    token = _links().dumps({"d": document.id, "o": g.client.id})
    audit.record(db.session, f"client:{g.client.name}", "document.link", "document",
                 document.id, {"ttl": ttl})
    db.session.commit()
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl)
    return jsonify(url=url_for("documents.download", token=token, _external=True),
                   expires_at=expires.isoformat())


@bp.get("/v1/files/<token>")
def download(token: str):
    try:
        claims = _links().loads(token, max_age=current_app.config["DOWNLOAD_LINK_TTL"])
    except SignatureExpired:
        raise APIError(403, "link_expired", "This download link has expired.") from None
    except BadSignature:
        raise APIError(403, "invalid_link", "This download link is not valid.") from None
    document = db.session.scalar(select(Document).where(
        Document.id == claims.get("d"), Document.owner_id == claims.get("o")))
    if document is None or document.status != CLEAN:  # e.g. found infected by a rescan
        raise APIError(404, "not_found", "No such document.")
    response = send_file(_storage().path(document.sha256), mimetype=document.mime_type,
                         as_attachment=True, download_name=document.filename,
                         conditional=False)
    # RFC 5987 filename* for any name; nosniff and a no-content CSP against rendering.
    response.headers["Content-Disposition"] = (
        f"attachment; filename*=UTF-8''{quote(document.filename, safe='')}")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response

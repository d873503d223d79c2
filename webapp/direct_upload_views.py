"""Direct-to-store uploads over HTTP: presign a PUT, complete it, read its state.

Large files need not pass through the web tier when the blob store is S3-compatible:
the client PUTs them to the store itself, and the worker checks them as it would an
upload (documents/direct_uploads.py).
"""
from __future__ import annotations

import datetime as dt
import re

from flask import Blueprint, current_app, g, jsonify, request

from documents import direct_uploads
from documents.models import Upload
from documents.sniffing import Rejected, allowlist_from
from tasks.app_state import storage
from webapp.auth import owned_or_404, require_scopes
from webapp.conditional import check_if_match, tagged
from webapp.errors import APIError
from webapp.extensions import db
from webapp.idempotency import idempotent

bp = Blueprint("uploads", __name__)
MIME_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,50}/[A-Za-z0-9!#$&^_.+-]{1,50}")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
START_FIELDS = ("a JSON object with filename (text), size (bytes), and optionally "
                "content_type and sha256 (the file's SHA-256, hex)")


def upload_json(upload: Upload, target: dict | None = None) -> dict:
    body = {"id": upload.id, "status": upload.status, "filename": upload.filename,
            "size": upload.size, "content_type": upload.declared_type, "sha256": upload.sha256,
            "document_id": upload.document_id,
            "error": ({"code": upload.error_code, "message": upload.error_message}
                      if upload.error_code else None),
            "created_at": upload.created_at.isoformat()}
    if target is not None:
        body["upload"] = {**target, "expires_at": upload.url_expires_at.isoformat()}
    return body


def _start_arguments() -> tuple[str, int, str | None, str | None]:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise APIError(400, "invalid_request", f"Send {START_FIELDS}.")
    filename, size, content_type = (payload.get("filename"), payload.get("size"),
                                    payload.get("content_type"))
    if not isinstance(filename, str) or not 1 <= len(filename) <= 1000:
        raise APIError(400, "invalid_request", "filename must be a text of 1 to 1000 characters.")
    if isinstance(size, float) and size.is_integer():  # JSON has one number type: 5.0 is 5
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise APIError(400, "invalid_request", "size must be a whole number of bytes, 1 or more.")
    if content_type is not None and (not isinstance(content_type, str)
                                     or not MIME_TYPE.fullmatch(content_type)):
        raise APIError(400, "invalid_request", "content_type must be a MIME type (type/subtype).")
    sha256 = payload.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256)):
        raise APIError(400, "invalid_digest", "sha256 must be the file's SHA-256 in hex "
                       "(64 characters).")
    return filename, size, content_type, sha256.lower() if sha256 else None


@bp.post("/v1/uploads")
@require_scopes("documents:write")
@idempotent()
def start():
    filename, size, content_type, sha256 = _start_arguments()
    config = current_app.config
    try:
        upload, target = direct_uploads.start(
            db.session, storage(), g.client.id, filename, content_type, size,
            max_bytes=config["DOCUMENT_MAX_BYTES"],
            allowlist=allowlist_from(config["DOCUMENT_ALLOWED_TYPES"]),
            url_ttl=config["UPLOAD_URL_TTL"], sha256=sha256)
    except Rejected as exc:
        raise APIError(exc.status, exc.code, str(exc)) from None
    except direct_uploads.DirectUploadsUnavailable:
        raise APIError(409, "direct_upload_unavailable",
                       "Direct uploads need an S3-compatible STORAGE_URL; send the file to "
                       "POST /v1/documents instead.") from None
    db.session.commit()
    return jsonify(upload_json(upload, target)), 201


@bp.get("/v1/uploads/<id:upload_id>")
@require_scopes("documents:write")
def show(upload_id: int):
    return tagged(upload_json(owned_or_404(Upload, upload_id, "upload")))


@bp.post("/v1/uploads/<id:upload_id>/complete")
@require_scopes("documents:write")
@idempotent()
def complete(upload_id: int):
    upload = owned_or_404(Upload, upload_id, "upload", for_update=True)
    check_if_match(upload_json(upload))
    within = dt.timedelta(hours=current_app.config["UPLOAD_COMPLETE_HOURS"])
    try:
        handed_over = direct_uploads.complete(db.session, storage(), upload, within)
    except direct_uploads.UploadExpired:
        raise APIError(409, "upload_expired", "This upload was not completed in time; "
                       "start a new one.") from None
    except direct_uploads.NotUploaded:
        raise APIError(409, "not_uploaded", "Nothing has been sent to the upload URL yet.") \
            from None
    db.session.commit()
    return jsonify(upload_json(upload)), 202 if handed_over else 200

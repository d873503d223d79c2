"""Documents over HTTP: upload, list, read, signed download links."""
from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, jsonify, redirect, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.wsgi import wrap_file

from documents.blob_audit import mark_missing
from documents.deletion import UnderHold, delete_documents, release_blobs
from documents.ingest import Spooled, create_document
from documents.models import CLEAN, DOCUMENT_STATUSES, MISSING_BLOB, Document, tags_of
from documents.operations import DocumentFilter, find_documents, owned_document
from documents.sniffing import Rejected, allowlist_from
from documents.text import index as text_index
from store import audit, tracing
from tasks.app_state import storage
from webapp import writes_from_here
from webapp.auth import demand_scopes, owned_or_404, require_scopes
from webapp.conditional import check_if_match, tagged
from webapp.errors import APIError
from webapp.extensions import db
from webapp.idempotency import idempotent
from webapp.query_args import choice_arg, int_arg, text_arg
from webapp.uploads import (
    check_digest,
    client_sha256,
    content_digest,
    part_sha256,
    spooled_body,
    spooled_files,
)
from whatsapp import document_origins

log = logging.getLogger(__name__)
bp = Blueprint("documents", __name__)
PRESIGNED_TTL = 60  # seconds a redirect's presigned GET stays valid
MISSING_FILE = ("Send the document as multipart field 'file', or as the raw body with "
                "its Content-Type (application/octet-stream if unknown).")
PAGE_SIZE = 50


def _links() -> URLSafeTimedSerializer:
    # itsdangerous signs with the last key and verifies with any: links minted before a
    # SECRET_KEY rotation stay valid for their TTL.
    keys = [*current_app.config["SECRET_KEY_FALLBACKS"], current_app.config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt="document-download")


def document_json(document: Document, origin: dict | None = None,
                  tags: list[str] | None = None) -> dict:
    """`origin`: where it came from other than an upload ({source, wamid} for WhatsApp);
    `title`, `external_ref`, `tags`: what an import's manifest said of it; `text`:
    what reading it found (documents/text/), null until a scan calls it clean."""
    return {"id": document.id, "sha256": document.sha256, "size": document.size,
            "mime_type": document.mime_type, "filename": document.filename,
            "status": document.status, "created_at": document.created_at.isoformat(),
            "scanned_at": document.scanned_at.isoformat() if document.scanned_at else None,
            "origin": origin, "title": document.title, "external_ref": document.external_ref,
            "tags": tags or [], "text": text_json(document),
            "preview": document.has_preview and document.status == CLEAN}


def text_json(document: Document) -> dict | None:
    if document.text_status is None:
        return None
    return {"status": document.text_status, "reason": document.text_reason,
            "characters": document.text_characters, "pages_ocr": document.text_pages_ocr,
            "ms": document.text_ms}


def documents_json(documents: list[Document], words: list[str] | None = None) -> list[dict]:
    """With a search's `words`: each with a `snippet` of its text around them."""
    ids = [d.id for d in documents]
    origins, tags = document_origins(db.session, ids), tags_of(db.session, ids)
    found = [document_json(d, origins.get(d.id), tags.get(d.id)) for d in documents]
    if words is not None:
        bodies = text_index.bodies(db.session, ids)
        for item in found:
            item["snippet"] = text_index.snippet(bodies.get(item["id"]), words)
    return found


def _received() -> tuple[Spooled, str | None, str | None]:
    """The uploaded file, spooled and checked against the client's digest:
    (spooled, filename, declared type). Read once per request: the Idempotency-Key
    fingerprint asks for it before the view does."""
    if "received_document" not in g:
        g.received_document = _receive()
    return g.received_document


def _receive() -> tuple[Spooled, str | None, str | None]:
    cap = current_app.config["DOCUMENT_MAX_BYTES"]
    if request.mimetype == "multipart/form-data":
        upload_file = spooled_files(cap).get("file")
        if upload_file is None:
            raise APIError(400, "missing_file", MISSING_FILE)
        spooled, filename, declared = (upload_file.stream.finish(), upload_file.filename,
                                       upload_file.mimetype)
        check_digest(part_sha256(upload_file), spooled)
    elif request.mimetype:
        expected = client_sha256(request.headers)
        spooled, filename, declared = spooled_body(cap)
        check_digest(expected, spooled)
    else:
        raise APIError(400, "missing_file", MISSING_FILE)
    return spooled, filename, declared


def _received_fingerprint() -> str:
    spooled, filename, declared = _received()
    return f"{spooled.sha256}\n{filename}\n{declared}"


@bp.post("/v1/documents")
@require_scopes("documents:write")
@idempotent(body=_received_fingerprint)
def upload():
    """Multipart (field `file`), or the raw body with its Content-Type and the name in
    Content-Disposition: the same checks, responses and dedup either way."""
    spooled, filename, declared = _received()
    try:
        document, created = create_document(
            db.session, storage(), g.client.id, spooled, filename, declared,
            allowlist_from(current_app.config["DOCUMENT_ALLOWED_TYPES"]))
    except Rejected as exc:
        raise APIError(exc.status, exc.code, str(exc)) from None
    db.session.commit()
    tracing.annotate(document_id=document.id)
    return jsonify(documents_json([document])[0]), 201 if created else 200


@bp.get("/v1/documents")
@require_scopes("documents:read")
def list_documents():
    status = choice_arg("status", DOCUMENT_STATUSES)
    page = int_arg("page", 1, 1, 100000)
    tag, external_ref = text_arg("tag", 64), text_arg("external_ref", 255)
    query = text_arg("q", 200)
    words = text_index.query_words(query) if query is not None else None
    if query is not None and not words:
        raise APIError(400, "invalid_query", "q needs at least one word (letters or digits).")
    which = DocumentFilter(owner_id=g.client.id, status=status, tag=tag,
                           external_ref=external_ref, words=tuple(words or ()),
                           search_config=text_index.text_search_config(
                               current_app.config["OCR_LANGUAGES"]))
    rows = find_documents(db.session, which, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return jsonify(documents=documents_json(rows, words), page=page)


# One rule for both methods: with a rule per method, werkzeug answers an id past
# BIGINT (which the converter refuses) with 405 instead of 404.
@bp.route("/v1/documents/<id:document_id>", methods=["GET", "DELETE"])
@require_scopes()
@idempotent()
def one_document(document_id: int):
    if request.method == "DELETE":
        return _delete_document(document_id)
    demand_scopes("documents:read")
    return tagged(documents_json([owned_or_404(Document, document_id, "document")])[0])


def _delete_document(document_id: int):
    """The owner's deletion: 204, then 404. The bytes go once no row needs them."""
    demand_scopes("documents:write")
    document = owned_or_404(Document, document_id, "document", for_update=True)
    check_if_match(documents_json([document])[0])
    try:
        hashes = delete_documents(db.session, [document], f"client:{g.client.name}")
    except UnderHold:
        raise under_hold() from None
    db.session.commit()
    release_blobs(db.session, storage(), hashes)
    return "", 204


@bp.post("/v1/documents/<id:document_id>/download-url")
@require_scopes("documents:read")
@idempotent()
def download_url(document_id: int):
    document = owned_or_404(Document, document_id, "document")
    if document.status == MISSING_BLOB:
        raise _gone()
    if document.status != CLEAN:
        raise APIError(409, "not_clean", f"The document is {document.status}; only clean "
                       "documents can be downloaded.")
    db.session.commit()  # the store is asked outside any transaction
    if not storage().exists(document.sha256):  # a HEAD on S3: never a link that 404s
        _blob_lost(document)
    ttl = current_app.config["DOWNLOAD_LINK_TTL"]
    token = _links().dumps({"d": document.id, "o": g.client.id})
    audit.record(db.session, f"client:{g.client.name}", "document.link", "document",
                 document.id, {"ttl": ttl})
    db.session.commit()
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl)
    return jsonify(url=url_for("documents.download", token=token, _external=True),
                   expires_at=expires.isoformat())


@bp.get("/v1/documents/<id:document_id>/text")
@require_scopes("documents:read")
def document_text(document_id: int):
    """What reading the document found: its text state and the text (clean only)."""
    document = _clean_or_409(owned_or_404(Document, document_id, "document"))
    body = text_index.body_of(db.session, document.id)
    return tagged({"id": document.id, "text": text_json(document), "content": body})


@bp.get("/v1/documents/<id:document_id>/preview")
@require_scopes("documents:read")
def preview(document_id: int):
    """The 256 px PNG of the first page or the image (clean only): the bytes, or a 302
    to a short-lived store URL in DOWNLOAD_MODE=redirect."""
    document = _clean_or_409(owned_or_404(Document, document_id, "document"))
    if not document.has_preview:
        raise APIError(404, "no_preview", "This document has no preview (yet, or of its "
                       "type).")
    return serve_preview(document)


def serve_preview(document: Document) -> Response:
    """A clean document's preview PNG (the API's and the console's): the bytes, or a
    302 to a short-lived store URL in DOWNLOAD_MODE=redirect."""
    sha256 = document.sha256
    db.session.commit()  # the store is asked outside any transaction
    blobs = storage()
    if current_app.config["DOWNLOAD_MODE"] == "redirect":
        url = blobs.presign_preview(sha256, expires_in=PRESIGNED_TTL)
        if url:
            return redirect(url, code=302)
    try:
        handle = blobs.open_preview(sha256)
    except FileNotFoundError:
        raise APIError(404, "no_preview", "This document's preview is missing from the "
                       "store.") from None
    with handle:
        png = handle.read(4 * 1024 * 1024)
    response = Response(png, mimetype="image/png")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


def _clean_or_409(document: Document) -> Document:
    if document.status != CLEAN:
        raise APIError(409, "not_clean", f"The document is {document.status}; only clean "
                       "documents are read.")
    return document


def under_hold() -> APIError:
    return APIError(409, "legal_hold", "A legal hold covers this document: it is kept until "
                    "an administrator releases the hold.")


def _gone() -> APIError:
    return APIError(410, "blob_missing", "The document's bytes are missing from the store; "
                    "an operator has been told (it is marked missing_blob).")


def _blob_lost(document: Document) -> None:
    """A clean row whose bytes are gone: mark every document of those bytes, say so."""
    log.error("a document's blob is missing", extra={"document_id": document.id})
    db.session.commit()
    writes_from_here()
    mark_missing(db.session, document.sha256, "web", "not found for a download")
    db.session.commit()
    raise _gone()


@bp.get("/v1/files/<token>")
def download(token: str):
    try:
        claims = _links().loads(token, max_age=current_app.config["DOWNLOAD_LINK_TTL"])
    except SignatureExpired:
        raise APIError(403, "link_expired", "This download link has expired.") from None
    except BadSignature:
        raise APIError(403, "invalid_link", "This download link is not valid.") from None
    # A link is its client's: revoking the client ends its links at once, not at the TTL.
    document_id, owner_id = claims.get("d"), claims.get("o")
    document = (owned_document(db.session, document_id, owner_id, active_owner=True)
                if isinstance(document_id, int) and isinstance(owner_id, int) else None)
    if document is not None and document.status == MISSING_BLOB:
        raise _gone()
    if document is None or document.status != CLEAN:  # e.g. found infected by a rescan
        raise APIError(404, "not_found", "No such document.")
    db.session.commit()  # ends the read before the store is asked
    # The bytes' own digest is their strong validator: a client that has them (its
    # If-None-Match) gets 304, before the store is asked for anything.
    if request.if_none_match.contains(document.sha256):
        not_modified = Response(status=304)
        not_modified.set_etag(document.sha256)
        return not_modified
    # RFC 5987 filename* for any name; nosniff and a no-content CSP against rendering.
    disposition = f"attachment; filename*=UTF-8''{quote(document.filename, safe='')}"
    blobs = storage()
    if current_app.config["DOWNLOAD_MODE"] == "redirect":
        if not blobs.exists(document.sha256):
            _blob_lost(document)
        # The store serves the same headers; the URL lives far shorter than the link.
        url = blobs.presign_get(document.sha256, disposition, document.mime_type,
                                expires_in=PRESIGNED_TTL)
        return redirect(url, code=302)
    try:
        blob = blobs.open(document.sha256)
    except FileNotFoundError:
        _blob_lost(document)
    # The server's file wrapper streams it (sendfile for a local file) and closes it.
    response = Response(wrap_file(request.environ, blob, buffer_size=256 * 1024),
                        mimetype=document.mime_type, direct_passthrough=True)
    response.content_length = document.size
    response.headers["Content-Digest"] = content_digest(document.sha256)
    response.set_etag(document.sha256)
    response.headers["Content-Disposition"] = disposition
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response

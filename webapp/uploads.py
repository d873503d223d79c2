"""Uploads streamed straight into hashing, capping temp files.

Each file part of a multipart upload goes into a HashingSpool as werkzeug parses it;
a raw-body upload (the body is the file, as `curl --data-binary` or an S3-style PUT
sends it) is read from the server's stream into one with no parser at all. Either
way the bytes are hashed, capped and written in one pass with no second copy.
"""
from __future__ import annotations

import functools
import io
from typing import Iterator

from flask import Flask, Request, current_app, g, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import ClientDisconnected
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from documents.ingest import HashingSpool, Spooled, TooLarge
from tasks.app_state import storage
from webapp.errors import APIError

# endpoint -> the setting that caps each of its files
UPLOAD_CAPS = {"documents.upload": "DOCUMENT_MAX_BYTES", "imports.create": "IMPORT_MAX_BYTES"}
MULTIPART_OVERHEAD = 1024 * 1024
UPLOAD_READ_SIZE = 1024 * 1024


class BufferedFormDataParser(FormDataParser):
    """Reads multipart bodies from the server 1 MB at a time.

    werkzeug's MultiPartParser always reads 64 KB (FormDataParser builds it without
    a buffer size, so setting one does nothing). Under gunicorn each small read
    copies the rest of the body reader's receive buffer into a new BytesIO, and
    large uploads spent most of their time there (bench/documents measures it). A
    1 MB BufferedReader in between serves werkzeug's 64 KB reads from memory.
    """

    def parse(self, stream, mimetype, content_length, options=None):
        if mimetype == "multipart/form-data":
            stream = io.BufferedReader(stream, buffer_size=UPLOAD_READ_SIZE)
        return super().parse(stream, mimetype, content_length, options)


class UploadRequest(Request):
    form_data_parser_class = BufferedFormDataParser

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        if self.endpoint not in UPLOAD_CAPS:
            return super()._get_file_stream(total_content_length, content_type, filename,
                                            content_length)
        spool = HashingSpool(storage(), current_app.config[UPLOAD_CAPS[self.endpoint]])
        g.setdefault("upload_spools", []).append(spool)
        return spool


def spooled_files(total_cap: int) -> dict[str, FileStorage]:
    """The request's file parts, each already spooled; 413 past a cap."""
    request.max_content_length = total_cap + MULTIPART_OVERHEAD  # enforced while streaming
    try:
        files = request.files
    except TooLarge as exc:
        raise APIError(413, "payload_too_large", str(exc)) from None
    return {name: part for name, part in files.items() if isinstance(part.stream, HashingSpool)}


def spooled_body(cap: int) -> tuple[Spooled, str | None, str | None]:
    """The raw request body as the file: (spooled, filename, declared type); 413 past
    `cap`. The name comes from `Content-Disposition` (`filename*` per RFC 5987 too)."""
    if request.content_length is not None and request.content_length > cap:
        raise APIError(413, "payload_too_large", f"the file exceeds {cap} bytes")
    request.max_content_length = cap  # Flask's app-wide cap is for other bodies
    spool = HashingSpool(storage(), cap)
    g.setdefault("upload_spools", []).append(spool)
    try:
        for chunk in _body_chunks(UPLOAD_READ_SIZE):
            spool.write(chunk)
    except TooLarge as exc:
        raise APIError(413, "payload_too_large", str(exc)) from None
    _disposition, options = parse_options_header(request.headers.get("Content-Disposition"))
    return spool.finish(), options.get("filename"), request.mimetype or None


def _body_chunks(size: int) -> Iterator[bytes]:
    """The request body in chunks of at most `size`, as the server hands them over.

    With a Content-Length, read from wsgi.input itself up to that length: werkzeug's
    request.stream, an io.RawIOBase, copies every chunk twice more (into a
    bytearray, then out of it), on every megabyte of a large upload. A chunked body
    is left to werkzeug, which knows how each server marks its end.
    """
    remaining = request.content_length
    if remaining is None:
        yield from iter(functools.partial(request.stream.read, size), b"")
        return
    stream = request.environ["wsgi.input"]
    while remaining:
        chunk = stream.read(min(size, remaining))
        if not chunk:
            raise ClientDisconnected()
        remaining -= len(chunk)
        yield chunk


def _discard_spools(_exc) -> None:
    # Whatever happened to the request, no temp file outlives it.
    for spool in g.pop("upload_spools", []):
        spool.discard()


def init_uploads(app: Flask) -> None:
    app.request_class = UploadRequest
    app.teardown_request(_discard_spools)

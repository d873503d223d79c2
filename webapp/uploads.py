"""Uploads streamed straight into hashing, capping temp files.

Each file part of a multipart upload goes into a HashingSpool as werkzeug parses it;
a raw-body upload (the body is the file, as `curl --data-binary` or an S3-style PUT
sends it) is read from the server's stream into one with no parser at all. Either
way the bytes are hashed, capped and written in one pass with no second copy.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
import io
import re
from typing import Iterator, Mapping

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


# RFC 9530's Content-Digest is a structured dictionary: `sha-256=:<base64>:`, maybe
# beside other algorithms; S3-style clients send `x-amz-checksum-sha256: <base64>`.
_CONTENT_DIGEST_SHA256 = re.compile(
    r"(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]{1,100}):\s*(?:;[^,]*)?(?=,|$)")
DIGEST_HEADERS = ("Content-Digest", "x-amz-checksum-sha256")


def client_sha256(headers: Mapping[str, str]) -> bytes | None:
    """The SHA-256 the client says the file has, from `Content-Digest` (RFC 9530) or
    `x-amz-checksum-sha256` among `headers` (the request's, when the body is the file;
    a multipart file part's own); None if it gave none; 400 `invalid_digest` if it is
    unreadable."""
    given = {}
    content_digest = headers.get("Content-Digest")
    if content_digest is not None:
        match = _CONTENT_DIGEST_SHA256.search(content_digest) if len(content_digest) < 1000 \
            else None
        if match is None:
            raise APIError(400, "invalid_digest",
                           "Content-Digest must carry sha-256=:<base64 of 32 bytes>: .")
        given["Content-Digest"] = match.group(1)
    amz = headers.get("x-amz-checksum-sha256")
    if amz is not None:
        given["x-amz-checksum-sha256"] = amz.strip()
    found = set()
    for name, value in given.items():
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 32:
            raise APIError(400, "invalid_digest", f"{name} is not a base64 SHA-256 digest.")
        found.add(digest)
    if len(found) > 1:
        raise APIError(400, "digest_mismatch", "Content-Digest and x-amz-checksum-sha256 differ.")
    return found.pop() if found else None


def check_digest(expected: bytes | None, spooled: Spooled) -> None:
    """400 `digest_mismatch` unless the bytes received hash to what the client said;
    the spool goes with the request (nothing is stored)."""
    if expected is not None and not hmac.compare_digest(expected, bytes.fromhex(spooled.sha256)):
        raise APIError(400, "digest_mismatch",
                       "The file's SHA-256 is not the digest the request carried: it was "
                       "changed or cut on the way. Nothing was stored; send it again.")


def part_sha256(part: FileStorage) -> bytes | None:
    """A multipart file's digest: its part's own headers, else the request's
    x-amz-checksum-sha256 (a request-level Content-Digest covers the whole body)."""
    if request.headers.get("Content-Digest") is not None:
        raise APIError(400, "invalid_digest",
                       "A request-level Content-Digest covers the whole multipart body, not "
                       "the file: put it in the file part's headers, or send "
                       "x-amz-checksum-sha256.")
    found = client_sha256(part.headers)
    return found if found is not None else client_sha256(request.headers)


def content_digest(sha256_hex: str) -> str:
    """The Content-Digest header (RFC 9530) of bytes whose SHA-256 is `sha256_hex`."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def _discard_spools(_exc) -> None:
    # Whatever happened to the request, no temp file outlives it.
    for spool in g.pop("upload_spools", []):
        spool.discard()


def init_uploads(app: Flask) -> None:
    app.request_class = UploadRequest
    app.teardown_request(_discard_spools)

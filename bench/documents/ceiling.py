"""Ceilings for uploads: bare WSGI apps on the same gunicorn config.

- `app`: reads and hashes the request body (no multipart parsing, no disk). No
  upload through gunicorn can beat it.
- `writing`: reads, hashes and writes the body to a temp file, then deletes it: what
  a raw-body upload must do at the least, since the bytes have to be kept.
"""
import hashlib
import os
import tempfile

READ_SIZE = 1024 * 1024


def _answer(start_response, digest) -> list[bytes]:
    body = digest.hexdigest().encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    stream, digest = environ["wsgi.input"], hashlib.sha256()
    while chunk := stream.read(READ_SIZE):
        digest.update(chunk)
    return _answer(start_response, digest)


def writing(environ, start_response):
    stream, digest = environ["wsgi.input"], hashlib.sha256()
    spool = os.environ.get("STORAGE_DIR") or tempfile.gettempdir()
    os.makedirs(spool, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool) as handle:
        while chunk := stream.read(READ_SIZE):
            digest.update(chunk)
            handle.write(chunk)
    return _answer(start_response, digest)

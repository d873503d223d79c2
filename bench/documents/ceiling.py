"""The ceiling: a bare WSGI app on the same gunicorn config that only reads and hashes
the request body (no multipart parsing, no disk). No upload through gunicorn can beat it."""
import hashlib

READ_SIZE = 1024 * 1024


def app(environ, start_response):
    stream, digest = environ["wsgi.input"], hashlib.sha256()
    while chunk := stream.read(READ_SIZE):
        digest.update(chunk)
    body = digest.hexdigest().encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]

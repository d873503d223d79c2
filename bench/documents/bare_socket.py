"""The most any upload endpoint can do on this machine: a plain socket server, with
no HTTP framework and no multipart parsing, that reads one POST body with
recv_into() into a reused buffer and, as a request handler does, hashes each piece
and writes it to a temp file before reading the next. An upload that hashes and
stores cannot do less work than this.

`python -m bench.documents.bare_socket` prints its port, serves one request and exits.
"""
from __future__ import annotations

import hashlib
import socket
import tempfile

READ_SIZE = 1024 * 1024


def read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    """The request head, and whatever part of the body came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the client closed before the end of the headers")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return head.lower(), body


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            return int(value)
    raise ValueError("this server needs a Content-Length")


def serve_once(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn, tempfile.TemporaryFile() as out:
        head, body = read_head(conn)
        length = content_length(head)
        if b"expect: 100-continue" in head:
            # curl waits a second for this before it sends a large body.
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        digest, received = hashlib.sha256(body), len(body)
        out.write(body)
        buffer = memoryview(bytearray(READ_SIZE))
        while received < length:
            size = conn.recv_into(buffer, min(READ_SIZE, length - received))
            if not size:
                raise ConnectionError("the client closed before the end of the body")
            digest.update(buffer[:size])
            out.write(buffer[:size])
            received += size
        reply = digest.hexdigest().encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(reply), reply))


def main() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        print(listener.getsockname()[1], flush=True)
        serve_once(listener)


if __name__ == "__main__":
    main()

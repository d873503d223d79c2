"""Object stores that fail the ways a real one does, on loopback: one that accepts
connections and never answers (a SIGSTOPped or wedged server), and one that answers
every request with a 5xx S3 error document."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERROR_BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
              b"<Message>We encountered an internal error. Please try again.</Message></Error>")


class HungStore:
    """Accepts and reads, answers nothing, until stopped."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)  # kept open, never answered

    def stop(self) -> None:
        self._stopped.set()
        self.listener.close()
        for conn in self.held:
            conn.close()


class _Failing(BaseHTTPRequestHandler):
    def _fail(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(ERROR_BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(ERROR_BODY)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _fail

    def log_message(self, *args) -> None:
        pass


class FailingStore:
    """Answers every request 500 InternalError."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

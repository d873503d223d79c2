"""A team's endpoint: a local HTTP server that verifies every delivery with the
`standardwebhooks` library, as a receiver following Sluice's docs would, and records
what it got. Its answers can be scripted: statuses in turn, a delay, a redirect.

Run as a program (`python -m tests.fakes.receiver PORT SECRET [DELAY]`) it is the
receiver of the e2e tests and the benchmark, printing one JSON line per delivery.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.services import wait_for


@dataclasses.dataclass
class Received:
    webhook_id: str
    verified: bool
    payload: dict | None
    headers: dict
    at: float


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a sender that gave up (a timeout, a killed process) closed the connection


class Receiver:
    def __init__(self, *secrets: str, statuses: list[int] | None = None, delay: float = 0.0,
                 redirect_to: str | None = None, port: int = 0, answer: bytes = b"ok"):
        self.secrets = list(secrets)
        self.statuses = list(statuses or [])
        self.delay, self.redirect_to, self.answer = delay, redirect_to, answer
        self.received: list[Received] = []
        self.cut = 0  # requests whose sender hung up before the whole body came
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm the second
            # waits for the client's delayed ACK, 40 ms a request (real servers set
            # TCP_NODELAY, as this does).
            disable_nagle_algorithm = True

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing arrived
                    with receiver.lock:
                        receiver.cut += 1
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(body, headers)
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.redirect_to:
                    status = 302
                self.send_response(status)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _record(self, body: bytes, headers: dict) -> None:
        payload, verified = None, False
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
                verified = True
                break
            except WebhookVerificationError:
                continue
        with self.lock:
            self.received.append(Received(headers.get("webhook-id", ""), verified, payload,
                                          headers, time.time()))

    def verified(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.verified]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        wait_for(lambda: len(self.received) >= count, timeout=timeout, interval=0.05,
                 what=f"{count} deliveries")
        return list(self.received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2]
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    receiver = Receiver(secret, delay=delay, port=port)
    seen = 0
    while True:
        time.sleep(0.05)
        with receiver.lock:
            fresh = receiver.received[seen:]
            seen = len(receiver.received)
        for item in fresh:
            print(json.dumps({"webhook_id": item.webhook_id, "verified": item.verified,
                              "type": (item.payload or {}).get("type"), "at": item.at,
                              "data": (item.payload or {}).get("data")}), flush=True)


if __name__ == "__main__":
    main()

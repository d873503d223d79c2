"""A local HTTP server that answers like the providers' status APIs (Stripe, Paystack,
Flutterwave, M-Pesa's Daraja).

Responses follow the providers' documented shapes (a Stripe PaymentIntent; a
Paystack `transaction/verify` envelope). Each path can be scripted with a
sequence of answers, including 5xx, 429 with Retry-After, and slow replies.
"""
from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def stripe_intent(reference: str, status: str) -> dict:
    return {"id": reference, "object": "payment_intent", "amount": 2000,
            "currency": "usd", "status": status}


def paystack_verify(reference: str, status: str) -> dict:
    return {"status": True, "message": "Verification successful",
            "data": {"id": 1, "reference": reference, "status": status, "amount": 5000,
                     "currency": "NGN", "paid_at": "2026-11-23T10:00:00.000Z"}}


class FakeProviders:
    def __init__(self):
        self.scripts: dict[str, collections.deque] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.bodies: list[tuple[str, object]] = []  # what POSTs sent: JSON, or form text
        self.default = (500, {"error": {"message": "not scripted"}})
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    fake.bodies.append((self.path, json.loads(raw or b"null")))
                except ValueError:  # a form (an OAuth token request)
                    fake.bodies.append((self.path, raw.decode()))
                self.do_GET()

            def do_GET(self):
                fake.requests.append((self.path, self.headers.get("Authorization")))
                script = fake.scripts.get(self.path)
                status, body, *extra = (script.popleft() if script else fake.default)
                options = extra[0] if extra else {}
                time.sleep(options.get("delay", 0))
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for name, value in options.get("headers", {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, path: str, *answers) -> None:
        self.scripts[path] = collections.deque(answers)

    def hits(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def flutterwave_verify(transaction_id: int, status: str, amount=100, currency="NGN") -> dict:
    """`GET /v3/transactions/{id}/verify`: amounts in major units."""
    return {"status": "success", "message": "Transaction fetched successfully",
            "data": {"id": transaction_id, "tx_ref": f"tx-{transaction_id}",
                     "flw_ref": "FLW-MOCK-1", "amount": amount, "currency": currency,
                     "charged_amount": amount, "status": status,
                     "customer": {"email": "ade.bola@example.com"}}}


def daraja_token(token: str = "daraja-token", expires_in: str = "3599") -> dict:
    """`GET /oauth/v1/generate?grant_type=client_credentials`."""
    return {"access_token": token, "expires_in": expires_in}


def stk_query(checkout_id: str, result_code: str) -> dict:
    """`POST /mpesa/stkpushquery/v1/query`, answered for a finished checkout."""
    return {"ResponseCode": "0", "ResponseDescription": "The service request has been "
            "accepted successsfully", "MerchantRequestID": "22205-34066-1",
            "CheckoutRequestID": checkout_id, "ResultCode": result_code,
            "ResultDesc": "The service request is processed successfully."}

"""How each provider signs a delivery, written apart from the code under test.

Stripe's scheme is cross-checked against the official `stripe` library, Standard
Webhooks is signed by the official `standardwebhooks` library itself, and every
scheme is pinned by vectors computed with openssl (test_signatures.py).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time

from standardwebhooks import Webhook


def stripe_headers(body: bytes, secret: str, timestamp: int | None = None,
                   extra_signatures: tuple[str, ...] = ()) -> dict[str, str]:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    parts = [f"t={t}"] + [f"v1={sig}" for sig in extra_signatures] + [f"v1={digest}"]
    return {"Stripe-Signature": ",".join(parts), "Content-Type": "application/json"}


def standard_headers(body: bytes, secret: str, msg_id: str,
                     timestamp: int | None = None) -> dict[str, str]:
    t = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(msg_id, dt.datetime.fromtimestamp(t, dt.timezone.utc),
                                     body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(t), "webhook-signature": signature,
            "Content-Type": "application/json"}


def paystack_headers(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
    return {"x-paystack-signature": digest, "Content-Type": "application/json"}


def meta_headers(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def generic_headers(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    signed = f"{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    return {"X-Signature": digest.decode(), "X-Timestamp": str(timestamp)}


def razorpay_headers(body: bytes, secret: str, event_id: str) -> dict[str, str]:
    return {"X-Razorpay-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "x-razorpay-event-id": event_id, "Content-Type": "application/json"}


def square_headers(body: bytes, key: str, url: str) -> dict[str, str]:
    digest = hmac.new(key.encode(), url.encode() + body, hashlib.sha256).digest()
    return {"x-square-hmacsha256-signature": base64.b64encode(digest).decode(),
            "Content-Type": "application/json"}


def github_headers(body: bytes, secret: str, delivery: str,
                   event: str = "push") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Delivery": delivery,
            "X-GitHub-Event": event, "Content-Type": "application/json"}


def shopify_headers(body: bytes, secret: str, webhook_id: str,
                    topic: str = "orders/create") -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return {"X-Shopify-Hmac-Sha256": digest.decode(), "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Topic": topic, "Content-Type": "application/json"}

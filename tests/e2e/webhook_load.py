"""Send signed Stripe deliveries to a running stack from many connections at once."""
from __future__ import annotations

import collections
import concurrent.futures
import json
import random
import threading

import requests

from tests.webhooks import signing


def payment_event(event_id: str, intent: str, amount: int = 2000, pad: int = 0,
                  email: str | None = None) -> bytes:
    event = {"id": event_id, "object": "event", "type": "payment_intent.succeeded",
             "created": 1700000000,
             "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount,
                                 "currency": "usd", "metadata": {"pad": "x" * pad}}}}
    if email is not None:  # a customer the body names (linked as the worker processes it)
        event["data"]["object"]["receipt_email"] = email
    return json.dumps(event).encode()


def deliver(url: str, bodies: list[bytes], secret: str, connections: int) -> collections.Counter:
    """POST every body (each signed at send time), `connections` at a time; count statuses."""
    local = threading.local()

    def send(body: bytes) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        try:
            return local.session.post(url, data=body, timeout=30,
                                      headers=signing.stripe_headers(body, secret)).status_code
        except requests.RequestException:
            return 0  # a connection error counts as a failure, never as success

    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        return collections.Counter(pool.map(send, bodies))


def redeliveries(events: int, copies: int, seed: int = 7) -> list[bytes]:
    bodies = [payment_event(f"evt_load_{i}", f"pi_load_{i}") for i in range(events)] * copies
    random.Random(seed).shuffle(bodies)
    return bodies

"""The outbox as tests read it: what a Redis broker holds, and a relay's next pass."""
from __future__ import annotations

import base64
import datetime as dt
import json

from store.publishing import publish_pending
from tasks.celery_app import outbox_publisher
from tests.helpers.workers import celery_of
from webapp.extensions import db


def queued(redis_client, queue: str) -> list[dict]:
    """Celery messages waiting in a Redis-broker queue, decoded."""
    messages = []
    for raw in reversed(redis_client.lrange(queue, 0, -1)):  # LPUSH, BRPOP: oldest last
        envelope = json.loads(raw)
        body = json.loads(base64.b64decode(envelope["body"]))
        messages.append({"task": envelope["headers"]["task"],
                         "outbox_id": envelope["headers"].get("outbox_id"),
                         "kwargs": body[1]})
    return messages


def relay(app) -> int:
    """What a worker's relay (tasks/relay.py) does next: publish every unpublished
    outbox row; how many it published."""
    with app.app_context():
        return publish_pending(db.session, outbox_publisher(celery_of(app)),
                               older_than=dt.timedelta(0)).published

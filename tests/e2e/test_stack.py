"""web + worker + beat from the Procfile, as real processes, on real Postgres and Redis."""
import json
import os
import re
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from store.outbox import OutboxMessage, enqueue
from tests.services import wait_for
from webapp.extensions import db

pytestmark = pytest.mark.e2e


def worker_mark(app, token: str):
    raw = app.extensions["sluice.redis"].get(f"sluice:ping:{token}")
    return json.loads(raw) if raw else None


def test_ping_published_through_the_outbox_runs_on_the_real_worker_on_every_queue(
        stack, stack_app):
    tokens = {queue: f"{queue}-{uuid.uuid4().hex}"
              for queue in ("webhooks", "documents", "imports", "cron")}
    with stack_app.app_context():
        for queue, token in tokens.items():
            enqueue(db.session, "sluice.ping", {"token": token}, queue=queue)
        db.session.commit()
    for queue, token in tokens.items():
        mark = wait_for(lambda: worker_mark(stack_app, token), timeout=30,
                        what=f"the worker to run the ping sent to {queue}")
        assert mark["pid"] != os.getpid()


def test_the_workers_relay_publishes_what_the_web_committed(stack, stack_app):
    token = f"relayed-{uuid.uuid4().hex}"
    with stack_app.app_context():  # the web's app: it publishes nothing itself
        session = db.session
        row = enqueue(session, "sluice.ping", {"token": token}, queue="webhooks")
        session.commit()
        row_id = row.id
    wait_for(lambda: worker_mark(stack_app, token), timeout=10,
             what="the worker's relay to publish the row and the worker to run it")
    with stack_app.app_context():
        published = db.session.scalar(
            select(OutboxMessage.published_at).where(OutboxMessage.id == row_id))
    assert published is not None


def test_health_over_http(stack):
    ready = requests.get(stack.url("/readyz"), timeout=5)
    assert ready.status_code == 200
    components = ready.json()["components"]
    assert components["database"]["status"] == "ok" and components["redis"]["status"] == "ok"
    assert "clamd" not in components  # the workers scan; the web does not need clamd
    assert requests.get(stack.url("/startupz"), timeout=5).json()["status"] == "ok"
    missing = requests.get(stack.url("/nope"), timeout=5, headers={"X-Request-Id": "e2e-1"})
    assert missing.status_code == 404
    assert missing.json()["error"]["request_id"] == "e2e-1"


def test_metrics_add_up_across_gunicorn_workers(stack):
    def livez_total() -> float:
        text = requests.get(stack.url("/metrics"), timeout=5).text
        match = re.search(r'sluice_http_requests_total\{endpoint="health\.livez",'
                          r'method="GET",status="200"\} ([0-9.]+)', text)
        return float(match.group(1)) if match else 0.0

    before = livez_total()
    for _ in range(40):  # a new connection each time, so both workers take some
        requests.get(stack.url("/livez"), timeout=5, headers={"Connection": "close"})
    counters = Path(stack.env["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db")
    assert len({path.stem for path in counters}) >= 2, "expected files from 2 workers"
    for _ in range(6):  # every scrape, whichever worker answers, sees the whole total
        assert livez_total() == before + 40

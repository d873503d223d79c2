"""OpenTelemetry through the real processes: gunicorn and the worker export to a local
collector stub over OTLP/HTTP, and one delivery's spans share one trace, from the
HTTP request through the outbox's publish to the task and the handler's SQL, even
when the broker is down as the delivery commits and the relay publishes it later.

Every span received is written where the end-of-run leak scan reads logs.
"""
from __future__ import annotations

import json
import os
import secrets
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from store.outbox import OutboxMessage
from tests.e2e.conftest import STRIPE_SECRET, fresh_stack_environment, running_stack
from tests.e2e.harness import Stack
from tests.e2e.webhook_load import payment_event
from tests.fakes.otlp import CollectorStub
from tests.services import ThrowawayRedis, wait_for
from tests.webhooks import signing
from webapp.extensions import db
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.e2e


@pytest.fixture
def collector():
    stub = CollectorStub()
    yield stub
    directory = os.environ.get("SLUICE_TEST_LOG_DIR")
    if directory:  # the leak scan at the end of the run reads exported spans too
        Path(directory, f"spans-{uuid.uuid4().hex[:8]}.log").write_text(
            "\n".join(json.dumps(span) for span in stub.snapshot()))
    stub.stop()


def traced_env(tmp_path, worker_index, name: str, collector: CollectorStub) -> dict[str, str]:
    env = fresh_stack_environment(tmp_path, worker_index, name)
    env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
               OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_SERVICE_NAME="sluice-e2e",
               OTEL_BSP_SCHEDULE_DELAY="200", WORKER_CONCURRENCY="2")
    return env


def deliver_traced(stack: Stack, event_id: str, trace_id: str) -> int:
    body = payment_event(event_id, f"pi_{event_id}")
    headers = {**signing.stripe_headers(body, STRIPE_SECRET),
               "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    answer = requests.post(stack.url("/webhooks/stripe"), data=body, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def processed(app, event_id: int) -> bool:
    with app.app_context():
        return db.session.scalar(select(WebhookEvent.status).where(
            WebhookEvent.id == event_id)) == "processed"


def relay_attempts(app, event_id: int) -> int:
    """Failed publishes of the event's outbox row so far."""
    with app.app_context():
        return db.session.scalar(select(OutboxMessage.attempts).where(
            OutboxMessage.kwargs["event_id"].as_integer() == event_id)) or 0


def trace_of(collector: CollectorStub, trace_id: str, needs: set[str]) -> list[dict]:
    def complete():
        spans = [s for s in collector.snapshot() if s["trace_id"] == trace_id]
        names = " | ".join(s["name"] for s in spans)
        return spans if all(need in names for need in needs) else None
    return wait_for(complete, timeout=60, interval=0.3, what=f"spans {needs} in one trace")


def needs(env: dict[str, str]) -> set[str]:
    """The spans of one delivery's trace. A new payment's row and its event are one
    statement on PostgreSQL (a CTE, so its span is named WITH), two INSERTs elsewhere."""
    written = "WITH" if env["DATABASE_URL"].startswith("postgresql") else "INSERT"
    return {"POST /webhooks/<source>", "publish sluice.webhooks.process_event",
            "run/sluice.webhooks.process_event", "UPDATE", written}


def test_one_delivery_is_one_trace_from_the_request_to_the_handlers_sql(
        tmp_path, worker_index, collector):
    env = traced_env(tmp_path, worker_index, "traced", collector)
    with running_stack(tmp_path, env, "web", "worker") as (stack, app):
        trace_id = secrets.token_hex(16)  # the sender's own trace: an incoming traceparent
        event_id = deliver_traced(stack, "evt_traced", trace_id)
        wait_for(lambda: processed(app, event_id), timeout=60, what="the event processed")
        spans = trace_of(collector, trace_id, needs(env))
    by_name = {s["name"]: s for s in spans}
    server = by_name["POST /webhooks/<source>"]
    assert server["attributes"]["sluice.source"] == "stripe"
    assert server["attributes"]["sluice.event_id"] == event_id
    task = by_name["run/sluice.webhooks.process_event"]
    assert task["attributes"]["sluice.event_id"] == event_id
    # Parent links all the way: request -> publish -> task -> the handler's SQL.
    publish = by_name["publish sluice.webhooks.process_event"]
    ids = {s["span_id"]: s for s in spans}
    assert ids[publish["parent_id"]]["name"] == server["name"]
    assert task["parent_id"] in ids
    handler_sql = [s for s in spans if s["name"].startswith("UPDATE") and
                   s["parent_id"] == task["span_id"]]
    assert handler_sql, [s["name"] for s in spans]
    # No statement parameters, no query strings, nothing of the body in any span.
    text = json.dumps(spans)
    assert "pi_evt_traced" not in text and "whsec_" not in text
    # The worker's log lines inside the task carry the trace id.
    assert trace_id in stack.log("worker")


def test_a_task_published_by_the_relay_after_a_broker_outage_stays_in_the_requests_trace(
        tmp_path, worker_index, collector):
    broker = ThrowawayRedis(tmp_path / "broker").start()
    env = traced_env(tmp_path, worker_index, "traced_relay", collector)
    env.update(CELERY_BROKER_URL=broker.url)
    try:
        with running_stack(tmp_path, env, "web", "worker", "beat") as (stack, app):
            broker.stop()  # the request commits; the relay's publish fails: the row waits
            trace_id = secrets.token_hex(16)
            event_id = deliver_traced(stack, "evt_relayed", trace_id)
            wait_for(lambda: relay_attempts(app, event_id) >= 1, timeout=30,
                     what="the worker's relay to try, and fail, to publish it")
            broker.start()
            wait_for(lambda: processed(app, event_id), timeout=90,
                     what="the relayed event processed")
            spans = trace_of(collector, trace_id, needs(env))
    finally:
        broker.stop()
    publishes = [s for s in spans if s["name"] == "publish sluice.webhooks.process_event"]
    assert len(publishes) >= 2  # a failed one during the outage, and the one that went
    task = next(s for s in spans if s["name"] == "run/sluice.webhooks.process_event")
    assert task["attributes"]["sluice.event_id"] == event_id

"""The gauges that show falling behind, each moved by a scenario that moves it."""
from __future__ import annotations

import datetime as dt
import logging
import re
from types import SimpleNamespace

from cron.jobs import registry
from cron.runner import run_job
from documents.models import Document
from store.db import utcnow
from store.outbox import OutboxMessage
from store.task_names import PROCESS_EVENT
from tasks import queue_gauge
from tasks.queue_depths import measure
from tasks.queue_gauge import QueueDepthGauge
from tests.helpers.workers import celery_of
from tests.services import free_port, wait_for
from tests.webapp.test_ops import sign_in, token_for
from webapp.backlog_metrics import clamd_signatures_age
from webapp.extensions import db
from webhooks.models import WebhookEvent

SAMPLE = re.compile(r"^(sluice_[a-z_]+)(\{[^}]*\})? (\S+)$", re.MULTILINE)


def gauges(app) -> dict[str, float]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {name + (labels or ""): float(value) for name, labels, value in SAMPLE.findall(text)}


def queued_on_the_overview(operator) -> str:
    page = operator.get("/ops/").get_data(as_text=True)
    return re.search(r'<div class="figure">([^<]*)</div><div class="label">queued in '
                     r'<code>webhooks</code>', page).group(1)


def ago(seconds: float) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=seconds)


def test_each_backlog_gauge_follows_what_is_waiting(make_app, clamd_url):
    app = make_app(CLAMD_URL=clamd_url, METRICS_CACHE_SECONDS=0, WEBHOOK_SOURCES={"sources": {
        "stripe": {"scheme": "stripe", "secrets_env": ["T_STRIPE"]},
        "paystack": {"scheme": "paystack", "secrets_env": ["T_PAYSTACK"]}}})
    before = gauges(app)
    assert before['sluice_events_oldest_unprocessed_age_seconds{source="stripe"}'] == 0
    assert before["sluice_outbox_oldest_unpublished_age_seconds"] == 0
    with app.app_context():
        session = db.session
        session.add_all([
            WebhookEvent(source="stripe", event_key="evt_wait", kind="payment", provider="stripe",
                         body=b"{}", status="received", received_at=ago(120), attempts=0),
            WebhookEvent(source="paystack", event_key="evt_dead", kind="payment",
                         provider="paystack", body=b"{}", status="dead", received_at=ago(5),
                         attempts=9),
            OutboxMessage(task_name="sluice.ping", kwargs={}, created_at=ago(400), attempts=0),
            Document(owner_id=1, sha256="a" * 64, size=1, mime_type="text/plain", filename="a",
                     status="pending_scan", created_at=ago(1000), scan_attempts=0)])
        session.commit()
        run_job(session, app.extensions["sluice.redis"],
                registry(app.config)["redrive_stuck_work"], trigger="manual", config=app.config)
    after = gauges(app)
    assert after['sluice_events_oldest_unprocessed_age_seconds{source="stripe"}'] >= 120
    assert after['sluice_events_oldest_unprocessed_age_seconds{source="paystack"}'] == 0
    assert after['sluice_events_dead{source="paystack"}'] == 1
    assert after["sluice_outbox_unpublished"] >= 1
    assert after["sluice_outbox_oldest_unpublished_age_seconds"] >= 400
    assert after['sluice_documents{status="pending_scan"}'] == 1
    assert after["sluice_documents_oldest_pending_scan_age_seconds"] >= 1000
    assert after['sluice_job_last_success_timestamp_seconds{job="redrive_stuck_work"}'] > \
        utcnow().timestamp() - 60
    assert after['sluice_job_last_outcome{job="redrive_stuck_work",outcome="succeeded"}'] == 1
    assert after['sluice_job_interval_seconds{job="purge_retention"}'] == 86400
    # The tests' clamd has only our EICAR .ndb, whose VERSION reply carries no database
    # date: the family is left out, not declared empty (the parser is tested below).
    text = app.test_client().get("/metrics")
    assert "sluice_clamd_signatures_age_seconds" not in text.get_data(as_text=True)
    assert text.headers["Content-Type"].startswith("text/plain; version=")
    assert text.headers["Content-Type"].count("charset") == 1


def test_queue_depths_are_what_a_workers_gauge_measured_lately(make_app, redis_db):
    app = make_app(METRICS_CACHE_SECONDS=0, OPS_OVERVIEW_CACHE_SECONDS=0,
                   QUEUE_DEPTH_INTERVAL=0.2)
    operator = app.test_client()
    assert sign_in(operator, token_for(app, "oncall", ["admin"])).status_code == 303
    assert not [name for name in gauges(app) if name.startswith("sluice_queue_depth")]
    assert queued_on_the_overview(operator) == "?"  # no worker has measured: unknown, not 0
    celery = celery_of(app)
    for _ in range(3):
        celery.send_task(PROCESS_EVENT, kwargs={"event_id": 0}, queue="webhooks")
    step = QueueDepthGauge(SimpleNamespace(app=celery))
    step.start(SimpleNamespace(app=celery))
    try:
        wait_for(lambda: gauges(app).get('sluice_queue_depth{queue="webhooks"}') == 3,
                 timeout=10, what="the worker's gauge to record the depth")
        assert gauges(app)['sluice_queue_depth{queue="cron"}'] == 0
        assert queued_on_the_overview(operator) == "3"
    finally:
        step.stop(None)
    # The figures outlive a stopped worker by three intervals, then the depth is unknown.
    wait_for(lambda: 'sluice_queue_depth{queue="webhooks"}' not in gauges(app),
             timeout=10, what="the stopped worker's figures to expire")


def test_with_the_broker_away_the_gauge_says_so_once_and_the_depths_are_unknown(
        make_app, caplog, monkeypatch):
    app = make_app(METRICS_CACHE_SECONDS=0, QUEUE_DEPTH_INTERVAL=0.1,
                   CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    celery = celery_of(app)
    attempts = []

    def counted(celery):
        attempts.append(1)
        return measure(celery)
    monkeypatch.setattr(queue_gauge, "measure", counted)
    step = QueueDepthGauge(SimpleNamespace(app=celery))
    with caplog.at_level(logging.WARNING, logger="tasks.queue_gauge"):
        step.start(SimpleNamespace(app=celery))
        try:
            wait_for(lambda: len(attempts) >= 3, timeout=30, what="three failed measures")
        finally:
            step.stop(None)
    warnings = [r for r in caplog.records if r.getMessage() == "queue depths not recorded"]
    assert len(warnings) == 1
    assert not [name for name in gauges(app) if name.startswith("sluice_queue_depth")]


def test_with_redis_away_the_depths_are_unknown_and_the_rest_is_served(make_app):
    app = make_app(METRICS_CACHE_SECONDS=0, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    assert "sluice_queue_depth{" not in text
    assert "sluice_outbox_unpublished 0.0" in text


def test_a_scrape_storm_is_served_from_the_cache(make_app):
    app = make_app(METRICS_CACHE_SECONDS=60)
    first = gauges(app)
    with app.app_context():
        db.session.add(OutboxMessage(task_name="sluice.ping", kwargs={}, created_at=ago(50),
                                     attempts=0))
        db.session.commit()
    assert gauges(app)["sluice_outbox_unpublished"] == first["sluice_outbox_unpublished"]
    app.config["METRICS_CACHE_SECONDS"] = 0
    assert gauges(app)["sluice_outbox_unpublished"] == first["sluice_outbox_unpublished"] + 1


def test_clamds_version_reply_gives_the_age_of_its_signatures():
    now = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.timezone.utc)
    assert clamd_signatures_age("ClamAV 1.0.7/27500/Tue Dec  1 08:00:00 2026", now) == 2 * 86400
    assert clamd_signatures_age("ClamAV 1.0.7", now) is None
    assert clamd_signatures_age("ClamAV 1.0.7/27500/not a date", now) is None


def test_the_scanner_is_reported_by_the_workers_not_asked_by_the_web(make_app, clamd_url):
    # Reported: web hosts without clamd showed it "missing" forever, and the signature-age
    # alert could never fire there. The web now shows what the workers' scanner said.
    from tasks import scanner_state
    from tasks.app_state import redis_client
    from webapp.health import components

    web = make_app(CLAMD_URL=None, METRICS_CACHE_SECONDS=0, QUEUE_DEPTH_INTERVAL=0.2)
    with web.test_request_context():
        assert components()["clamd"]["status"] == "unknown"  # no worker has said
    celery = celery_of(web)
    web.config["CLAMD_URL"] = clamd_url  # the worker's setting, read as its step starts
    step = QueueDepthGauge(SimpleNamespace(app=celery))
    step.start(SimpleNamespace(app=celery))
    web.config["CLAMD_URL"] = None       # and the web host's: none
    try:
        with web.test_request_context():
            wait_for(lambda: components()["clamd"] == {"status": "ok"}, timeout=10,
                     what="the worker's report of its scanner")
    finally:
        step.stop(None)
    # The tests' clamd has no database date; one that has gives the gauge, on the web.
    with web.app_context():
        scanner_state.record(redis_client(), web.config["REDIS_KEY_PREFIX"], {
            "status": "ok", "version": "ClamAV 1.0.7/27500/Tue Dec  1 08:00:00 2026"}, 60)
    expected = clamd_signatures_age("ClamAV 1.0.7/27500/Tue Dec  1 08:00:00 2026", utcnow())
    assert abs(gauges(web)["sluice_clamd_signatures_age_seconds"] - expected) < 60
    with web.app_context():
        scanner_state.record(redis_client(), web.config["REDIS_KEY_PREFIX"],
                             scanner_state.measure(None, 1), 60)
    with web.test_request_context():
        assert components()["clamd"]["status"] == "missing"

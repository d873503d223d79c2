import time

import pytest
from sqlalchemy import text

from tests.services import free_port
from webapp import create_app
from webapp.extensions import db
from webapp.migrate import script_heads


def test_livez(client):
    response = client.get("/livez")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_startupz_is_ok_at_the_migration_head(client):
    body = client.get("/startupz").get_json()
    assert body["status"] == "ok"
    assert body["components"]["migrations"]["current"] == sorted(script_heads())


def test_startupz_is_503_on_an_unmigrated_database(app_config, tmp_path):
    app = create_app({**app_config, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    response = app.test_client().get("/startupz")
    assert response.status_code == 503
    migrations = response.get_json()["components"]["migrations"]
    assert migrations["status"] == "behind" and migrations["current"] == []


def test_readyz_of_a_web_process_without_clamd_is_ok_scanning_is_the_workers(client):
    # Reported: web hosts without clamd answered "degraded" forever.
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    unknown = {"status": "unknown",
               "detail": "no worker has reported on it lately (is a worker running?)"}
    assert body == {"status": "ok", "components": {
        "database": {"status": "ok"}, "redis": {"status": "ok"},
        "storage": {"status": "ok", "backend": "file"}},
        "workers": {"clamd": unknown, "ocr": unknown}}


@pytest.mark.parametrize("languages, status", [("eng", "ok"), ("eng+xyz", "missing")])
def test_readyz_shows_the_ocr_the_enrich_workers_report_without_depending_on_it(
        make_app, languages, status):
    from tasks import scanner_state
    from tasks.app_state import redis_client
    from tests.services import require_ocr

    require_ocr()
    app = make_app(OCR_LANGUAGES=languages)
    with app.test_request_context():
        scanner_state.record(redis_client(), app.config["REDIS_KEY_PREFIX"],
                             scanner_state.measure_ocr(languages), 60, scanner_state.OCR_KEY)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"
    assert response.get_json()["workers"]["ocr"]["status"] == status


def test_without_tesseract_the_ocr_reads_missing(monkeypatch):
    from tasks import scanner_state

    monkeypatch.setenv("PATH", "/nonexistent")
    state = scanner_state.measure_ocr("eng")
    assert state["status"] == "missing" and "tesseract is not installed" in state["detail"]


def test_the_overview_shows_the_workers_scanner_as_a_state_never_a_version(
        make_app, clamd_url):
    from tasks import scanner_state
    from tasks.app_state import redis_client
    from webapp.health import components

    app = make_app()
    with app.test_request_context():
        scanner_state.record(redis_client(), app.config["REDIS_KEY_PREFIX"],
                             scanner_state.measure(clamd_url, 2), 60)
        assert components()["clamd"] == {"status": "ok"}


def test_readyz_reports_redis_down_quickly_but_stays_200(make_app, tmp_path):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                   CLAMD_URL=f"unix://{tmp_path / 'no-clamd.sock'}")
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    assert time.monotonic() - started < 3
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["components"]["redis"]["status"] == "down"
    assert "clamd" not in body["components"]


def test_readyz_is_503_when_the_database_is_down(app_config):
    app = create_app({**app_config, "DATABASE_URL":
                      f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "down"
    assert body["components"]["database"]["status"] == "down"
    assert body["components"]["redis"]["status"] == "ok"


def test_a_hung_store_cannot_stall_readyz_or_pile_probes_onto_the_web(
        make_app, tmp_path, monkeypatch):
    # Reported: with the store SIGSTOPped and /readyz probed every second, /livez and
    # the API waited up to 9.5 s: the storage check took boto3's 30 s read timeout x 3.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.fakes.broken_store import HungStore
    from tests.services import MotoS3

    for name, value in MotoS3.ENV.items():
        monkeypatch.setenv(name, value)
    store = HungStore()
    try:
        app = make_app(STORAGE_URL="s3://bucket/x", S3_ENDPOINT_URL=store.endpoint,
                       SPOOL_DIR=str(tmp_path / "spool"), HEALTH_CHECK_TIMEOUT=1.0)
        client = app.test_client()
        # What is under test is the hung store. A first connection to a loaded CI
        # database once took longer than the deadline and made a probe 503 (database
        # down): the pool holds a connection before the probes start.
        with app.app_context():
            db.session.execute(text("SELECT 1"))
            db.session.rollback()

        def probe(_):
            started = time.monotonic()
            response = client.get("/readyz")
            return time.monotonic() - started, response.status_code, response.get_json()

        rounds = []
        for _ in range(5):  # 20 concurrent probes, five times over ~3 s
            with ThreadPoolExecutor(20) as pool:
                rounds.extend(pool.map(probe, range(20)))
            time.sleep(0.6)
        assert max(took for took, _, _ in rounds) < 2.5
        # Only the first round waits out the deadline: a component that timed out is
        # not waited for again, so later probes answer at once and hold no request
        # thread (CI saw /livez queue 0.9 s behind probes that each waited it again).
        assert max(took for took, _, _ in rounds[20:]) < 0.5  # the deadline is 1.0
        assert {code for _, code, _ in rounds} == {200}  # degraded: webhooks still land
        assert all(body["components"]["storage"] == {"status": "down", "error": "Timeout"}
                   for _, _, body in rounds)
        assert all(body["components"]["database"] == {"status": "ok"} for _, _, body in rounds)
        # one hung storage check at a time, however many probes came
        hung = [t for t in threading.enumerate() if t.name == "readiness-storage"]
        assert len(hung) <= 1
        started = time.monotonic()
        assert client.get("/livez").status_code == 200
        assert time.monotonic() - started < 0.05
    finally:
        store.stop()

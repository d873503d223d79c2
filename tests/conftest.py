"""Fixtures: app, client, runner on a real database, one rolled-back savepoint per test.

PostgreSQL when TEST_DATABASE_URL is set (one database per xdist worker, migrated
once per session), SQLite otherwise. Redis is real too: one db number per worker,
flushed before each test.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import redis

from tests import log_leaks, services
from tests.helpers.workers import as_worker
from webapp import create_app
from webapp.config import DEFAULTS
from webapp.logging import json_handler
from webapp.migrate import upgrade

# Every test process, and every e2e stack when it stops, leaves its logs here; the
# controller scans them all for secrets and personal data at the end of the run.
LOG_DIR = "SLUICE_TEST_LOG_DIR"
LEAK_SCAN = pytest.StashKey[tuple]()


def pytest_configure(config):
    """Write every log record of this process into LOG_DIR as production would:
    through the same redaction, as the same JSON. xdist workers inherit LOG_DIR."""
    directory = Path(os.environ.setdefault(LOG_DIR, tempfile.mkdtemp(prefix="sluice-logs-")))
    handler = json_handler(logging.FileHandler(directory / f"pytest-{os.getpid()}.log"))
    logging.getLogger().addHandler(handler)


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return  # the controller scans every process's logs, once
    directory = Path(os.environ[LOG_DIR])
    files, lines, leaks = log_leaks.scan_directory(directory)
    session.config.stash[LEAK_SCAN] = (directory, files, lines, leaks)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    """A developer's own DATABASE_URL, CLAMD_URL... must not leak into tests."""
    for key in list(DEFAULTS) + ["SLUICE_INSTANCE_PATH", "PROMETHEUS_MULTIPROC_DIR"]:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def worker_index(worker_id) -> int:
    return 0 if worker_id == "master" else int(worker_id.removeprefix("gw"))


@pytest.fixture(scope="session")
def migrated_database_url(tmp_path_factory, worker_index) -> str:
    """The test database, migrated by the role that owns the tables; on PostgreSQL the
    apps connect as an application role row-level security binds, as in production."""
    url = services.fresh_database(f"sluice_test_{worker_index}", tmp_path_factory.mktemp("db"))
    upgrade(url)
    return services.as_app_role(url)


@pytest.fixture(scope="session")
def redis_url(worker_index) -> str:
    return services.redis_url(1 + 2 * worker_index)


@pytest.fixture
def redis_db(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app_config(migrated_database_url, redis_url, tmp_path) -> dict:
    return {
        "TESTING": True,
        "DATABASE_URL": migrated_database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key",
        "DATA_KEYS": services.DATA_KEYS,
        "INDEX_KEY": services.INDEX_KEY,
        "STORAGE_DIR": str(tmp_path / "storage"),
        "BEAT_SCHEDULE_FILE": str(tmp_path / "celerybeat-schedule"),
    }


@pytest.fixture
def make_app(app_config, redis_db, tmp_path, monkeypatch):
    """Build apps whose sessions all run inside one transaction rolled back at the end."""
    monkeypatch.setenv("SLUICE_INSTANCE_PATH", str(tmp_path / "instance"))
    opened = []

    def factory(**overrides):
        app = create_app({**app_config, **overrides})
        state = app.extensions["sluice.db"]
        connection = state.engine.connect()
        transaction = connection.begin()
        state.sessionmaker.configure(bind=connection, join_transaction_mode="create_savepoint")
        opened.append((state, connection, transaction))
        return app

    yield factory
    for state, connection, transaction in opened:
        transaction.rollback()
        connection.close()
        state.engine.dispose()


@pytest.fixture
def committing_app(app_config, redis_db, tmp_path, worker_index, monkeypatch):
    """Build apps on a database of the test's own, whose commits stay: for threads
    racing on real transactions, or a dump of what was stored. Apps built with the
    same `name` share it."""
    monkeypatch.setenv("SLUICE_INSTANCE_PATH", str(tmp_path / "instance"))
    urls, apps = {}, []

    def factory(name: str, **overrides):
        if name not in urls:
            urls[name] = services.fresh_database(f"sluice_{name}_{worker_index}", tmp_path)
            upgrade(urls[name])
        apps.append(create_app({**app_config, "DATABASE_URL": urls[name], **overrides}))
        return apps[-1]

    yield factory
    for app in apps:
        app.extensions["sluice.db"].engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def worker_app(make_app):
    """An app as the worker and beat build it, with its Celery app; what a transaction
    enqueues is published by a relay (tests call tests.helpers.outbox.relay)."""
    return as_worker(make_app())


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def clamd_url(tmp_path_factory):
    clamd = services.Clamd(tmp_path_factory.mktemp("clamd")).start()
    yield clamd.url
    clamd.stop()


@pytest.fixture(autouse=True)
def _fresh_rate_limiter():
    yield
    # flask-limiter keeps its "storage is down" flag and in-memory fallback on the one
    # Limiter object that every app in this process shares; production has one app.
    from webapp.extensions import limiter

    limiter._storage_dead = False
    fallback = getattr(limiter, "_fallback_storage", None)
    if fallback is not None:
        fallback.reset()


def pytest_terminal_summary(terminalreporter, config):
    """Print the log scan's verdict and the fault-injection figures (also under xdist)."""
    if LEAK_SCAN in config.stash:
        directory, files, lines, leaks = config.stash[LEAK_SCAN]
        terminalreporter.section("log leak scan", red=bool(leaks), green=not leaks)
        terminalreporter.write_line(f"{files} log files, {lines} lines: {len(leaks)} leaks")
        for leak in leaks[:50]:
            terminalreporter.write_line(f"  {leak}", red=True)
        if leaks:
            terminalreporter.write_line(f"logs kept in {directory}; the run fails")
    rows = [value for outcome in ("passed", "failed")
            for report in terminalreporter.stats.get(outcome, [])
            if report.when == "call"
            for name, value in report.user_properties if name == "fault_report"]
    if rows:
        terminalreporter.section("fault injection")
        for row in rows:
            figures = ", ".join(f"{k} {v}" for k, v in row.items() if k != "scenario")
            terminalreporter.write_line(f"{row['scenario']}: {figures}")

"""`make run`'s setup: no DATABASE_URL, no REDIS_URL; SQLite and the embedded Redis.

honcho starts web, worker and beat from the Procfile, as `make run` does.
"""
import json
import os
import sys
import uuid

import pytest
import redis
import requests

from store.outbox import enqueue
from tests.e2e.harness import Stack, clean_environment
from tests.services import free_port, wait_for
from webapp import create_app
from webapp.embedded import socket_path
from webapp.extensions import db

pytestmark = pytest.mark.e2e


@pytest.fixture
def embedded_stack(tmp_path):
    instance = tmp_path / "instance"
    port = free_port()
    stack = Stack(tmp_path / "logs", clean_environment(
        SLUICE_INSTANCE_PATH=str(instance), PORT=str(port), WEB_CONCURRENCY="2",
        OUTBOX_RELAY_INTERVAL="1"))
    stack.release()
    stack.start("honcho", command=[sys.executable, "-m", "honcho", "start", "-f", "Procfile",
                                   "-p", str(port), "web", "worker", "beat"])
    try:
        yield stack
    finally:
        stack.stop()
        sock = socket_path(str(instance))
        if sock.exists():
            redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=True)


def test_make_run_setup_serves_and_works_with_nothing_but_python(embedded_stack, monkeypatch):
    ready = embedded_stack.wait_ready(timeout=90)
    assert ready["status"] == "ok"
    assert ready["components"]["database"] == {"status": "ok"}
    assert ready["components"]["redis"] == {"status": "ok"}
    assert "clamd" not in ready["components"]
    assert requests.get(embedded_stack.url("/livez"), timeout=5).status_code == 200

    # The same defaults in this process reach the same SQLite file and Redis server.
    monkeypatch.setenv("SLUICE_INSTANCE_PATH", embedded_stack.env["SLUICE_INSTANCE_PATH"])
    app = create_app()
    assert app.config["DATABASE_URL"].startswith("sqlite:///")
    assert app.config["REDIS_URL"].startswith("unix://")
    token = uuid.uuid4().hex
    with app.app_context():
        enqueue(db.session, "sluice.ping", {"token": token}, queue="documents")
        db.session.commit()
    client = app.extensions["sluice.redis"]
    mark = wait_for(lambda: client.get(f"sluice:ping:{token}"), timeout=60,
                    what="the embedded worker to run the ping")
    assert json.loads(mark)["pid"] != os.getpid()
    app.extensions["sluice.db"].engine.dispose()

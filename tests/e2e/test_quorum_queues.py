"""CELERY_QUEUE_TYPE=quorum: RabbitMQ's replicated quorum queues, with a real worker.
A retry's countdown waits in RabbitMQ (native delayed delivery, which needs the topic
exchanges tasks/celery_app.py declares for quorum queues), not inside a worker. The
SIGKILL-mid-handler scenario on them is in test_faults.py."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import redis

from tasks.celery_app import celery_config
from tests.e2e.conftest import fresh_stack_environment
from tests.e2e.harness import app_settings
from tests.e2e.test_faults import start_stack
from tests.helpers.workers import celery_of
from tests.services import wait_for
from webapp import create_app

pytestmark = pytest.mark.e2e


def delayed_messages(vhost: str) -> int:
    """Messages RabbitMQ holds in its delayed-delivery queues."""
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name",
                             "messages"], capture_output=True, text=True, timeout=60).stdout
    return sum(int(count) for name, _, count in
               (line.partition("\t") for line in listed.splitlines())
               if name.startswith("celery_delayed_") and count.strip().isdigit())


@pytest.mark.parametrize("broker", ["rabbitmq-quorum"], indirect=True)
def test_a_countdown_on_quorum_queues_waits_in_rabbitmq(tmp_path, worker_index, broker):
    _, settings = broker
    env = fresh_stack_environment(tmp_path, worker_index, "quorum_delay")
    env.update(**settings)
    stack = start_stack(tmp_path, env, "worker")
    app = create_app(app_settings(env, "CELERY_BROKER_URL", "CELERY_QUEUE_TYPE"))
    assert app.config["CELERY_QUEUE_TYPE"] == "quorum"
    queues = celery_config(app.config)["task_queues"]
    assert {(q.exchange.type, q.queue_arguments["x-queue-type"]) for q in queues} == \
        {("topic", "quorum")}
    celery, marks = celery_of(app), redis.Redis.from_url(env["REDIS_URL"])
    vhost = settings["CELERY_BROKER_URL"].rsplit("/", 1)[1]
    try:
        celery.send_task("sluice.ping", kwargs={"token": "now"})
        wait_for(lambda: marks.get("sluice:ping:now") or marks.keys("*ping:now"), timeout=60,
                 interval=0.2, what="the worker to run a task from a quorum queue")
        sent = time.time()
        celery.send_task("sluice.ping", kwargs={"token": "later"}, countdown=8)
        assert wait_for(lambda: delayed_messages(vhost), timeout=6, interval=0.1,
                        what="the delayed message in RabbitMQ") == 1
        key = wait_for(lambda: next(iter(marks.keys("*ping:later")), None), timeout=30,
                       interval=0.2, what="the delayed task to run")
        ran = json.loads(marks.get(key))["at"]
        assert 8 <= ran - sent < 25, ran - sent
        log = stack.log("worker")
        assert "Direct exchanges are not supported" not in log
        assert "Native delayed delivery will not be available" not in log
    finally:
        stack.stop()
        app.extensions["sluice.db"].engine.dispose()

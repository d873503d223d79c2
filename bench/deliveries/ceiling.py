"""The ceiling for bench/deliveries: the same worker pool (Celery, threads, the same
concurrency, the same broker) POSTing pre-signed bodies to the same receiver, with no
database: what sending alone costs. Started as
`celery -A bench.deliveries.ceiling worker -Q ceiling -P threads -c N`.
Environment: CEILING_BROKER_URL, CEILING_BODIES (a JSON file of [url, headers, body]).
"""
from __future__ import annotations

import json
import os
import threading

import requests
from celery import Celery

app = Celery("ceiling", broker=os.environ["CEILING_BROKER_URL"])
app.conf.update(task_default_queue="ceiling", task_acks_late=True,
                worker_prefetch_multiplier=1, task_ignore_result=True,
                worker_hijack_root_logger=False)
_bodies = json.loads(open(os.environ["CEILING_BODIES"]).read())
_local = threading.local()


def _session() -> requests.Session:
    if not hasattr(_local, "session"):  # one per thread: keep-alive, as the real one
        _local.session = requests.Session()
    return _local.session


@app.task(name="bench.ceiling.post", acks_late=True, ignore_result=True)
def post(index: int) -> None:
    url, headers, body = _bodies[index]
    _session().post(url, data=body.encode(), headers=headers, timeout=15)

"""Plain Celery, as the soak's yardstick: the settings Sluice's worker uses (acks_late,
reject_on_worker_lost, prefetch 1, prefork, JSON) on kombu's stock Redis transport, a
no-op task, and no time limits (the yardstick the growth was first measured against).

    celery -A bench.soak.baseline worker -Q soak-baseline -c 2
"""
import os

from celery import Celery

app = Celery("soak-baseline", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True,
                task_acks_late=True, task_reject_on_worker_lost=True,
                worker_prefetch_multiplier=1, worker_hijack_root_logger=False)


@app.task(name="soak.noop")
def noop(token: str) -> None:
    return None

"""The consumer process keeps no per-task memory for time limits (tasks/timers.py)."""
import types

from celery.concurrency.asynpool import AsynPool
from kombu.asynchronous import Hub

from tasks.timers import PruneCancelledTimers, prune_cancelled
from tests.helpers.workers import celery_of


def test_celerys_time_limit_timers_for_finished_tasks_are_pruned():
    # The prefork pool's own handlers, on a real event-loop hub: one timer entry per
    # task with a time limit, cancelled when the task finishes.
    hub = Hub()
    pool = AsynPool.__new__(AsynPool)  # only its time-limit handlers; no processes
    pool._create_timelimit_handlers(hub)
    jobs = [types.SimpleNamespace(_job=n) for n in range(2000)]
    for job in jobs:
        pool.on_timeout_set(job, 1500, 1800)
    running = jobs[-3:]
    for job in jobs[:-3]:
        pool.on_timeout_cancel(job)
    try:
        assert len(hub.timer) == 2000  # what piled up before: cancelled, still queued
        assert prune_cancelled(hub.timer) == 1997
        assert len(hub.timer) == 3
        # The tasks still running keep their time limits, in heap order.
        queued = [item.entry for item in hub.timer.queue]
        assert [entry.args[0] for entry in queued] == [job._job for job in running]
        assert prune_cancelled(hub.timer) == 0
    finally:
        hub.close()


def test_pruning_keeps_the_very_heap_the_event_loop_iterates():
    hub = Hub()
    try:
        heap = hub.timer._queue
        kept = hub.call_later(5, lambda: None)
        hub.call_later(1, lambda: None).cancel()
        prune_cancelled(hub.timer)
        assert hub.timer._queue is heap and [i.entry for i in heap] == [kept]
    finally:
        hub.close()


def test_every_worker_runs_the_step(app):
    assert PruneCancelledTimers in celery_of(app).steps["worker"]

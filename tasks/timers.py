"""Keep the worker's event-loop timer heap free of cancelled entries.

Every task has a time limit (CELERY_TASK_TIME_LIMIT and its soft limit), and the
prefork pool enforces it from the consumer process: for each task it schedules a
timer entry on the event loop (celery.concurrency.asynpool, `on_timeout_set`) and
cancels it when the task finishes. kombu's Timer only marks a cancelled entry and
leaves it in its heap until it falls due, a whole soft time limit later, so the
consumer process held a few hundred bytes per task for that long, growing with the
task rate (celery/celery#5200 and #1129; a worker without time limits stays flat).

kombu has no public way to drop cancelled entries, so this step does the smallest
thing that works: every PRUNE_INTERVAL seconds, in the event loop's own thread,
it removes them from the heap in place.
"""
from __future__ import annotations

import heapq

from celery import bootsteps

PRUNE_INTERVAL = 10.0  # seconds; the heap then holds at most this long's worth of them


def prune_cancelled(timer) -> int:
    """Remove cancelled entries from a kombu Timer's heap; how many were removed."""
    queue = timer._queue  # a heap of scheduled(eta, priority, entry); no public accessor
    live = [item for item in queue if not item.entry.canceled]
    removed = len(queue) - len(live)
    if removed:
        queue[:] = live  # in place: the running event loop iterates over this very list
        heapq.heapify(queue)
    return removed


class PruneCancelledTimers(bootsteps.StartStopStep):
    """A worker step: needs the event loop (the hub), which prefork on Redis or AMQP has."""

    requires = {"celery.worker.components:Hub"}

    def start(self, worker) -> None:
        if worker.hub is not None:
            worker.hub.call_repeatedly(PRUNE_INTERVAL, prune_cancelled, worker.hub.timer)

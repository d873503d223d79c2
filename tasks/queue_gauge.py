"""A worker step: a thread that measures, for the web, the broker's queue depths and
the state of the worker's scanner.

See `tasks.queue_depths` and `tasks.scanner_state` for why the workers measure and
the web reads. A thread,
not the consumer's timer: a passive declare blocks while the broker is away, and
the consumer's event loop must not.
"""
from __future__ import annotations

import logging
import threading

from celery import bootsteps

from tasks import scanner_state
from tasks.app_state import redis_client
from tasks.queue_depths import measure, record

log = logging.getLogger(__name__)


class QueueDepthGauge(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker) -> None:
        interval = worker.app.flask_app.config["QUEUE_DEPTH_INTERVAL"]
        if interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, args=(worker.app, interval),
                                        name="queue-depths", daemon=True)
        self._thread.start()

    def stop(self, worker) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, celery, interval: float) -> None:
        flask_app = celery.flask_app
        client = redis_client(flask_app)
        prefix = flask_app.config["REDIS_KEY_PREFIX"]
        clamd_url = flask_app.config.get("CLAMD_URL")
        timeout = flask_app.config["HEALTH_CHECK_TIMEOUT"]
        # OCR is read once (an install does not change under a running worker), and
        # told only by a worker that reads text: another may well have no tesseract
        ocr = (scanner_state.measure_ocr(flask_app.config["OCR_LANGUAGES"])
               if _consumes(celery, "enrich") else None)
        failing = False
        while True:
            try:
                scanner_state.record(client, prefix, scanner_state.measure(clamd_url, timeout),
                                     interval)
                if ocr is not None:
                    scanner_state.record(client, prefix, ocr, interval, scanner_state.OCR_KEY)
                record(client, prefix, measure(celery), interval)
                failing = False
            except Exception as exc:  # the broker or Redis away, or a bug: the figures
                if not failing:       # expire, and the depths read as unknown; once per spell
                    log.warning("queue depths not recorded", extra={"error": type(exc).__name__})
                failing = True
            if self._stopping.wait(interval):
                return


def _consumes(celery, queue: str) -> bool:
    """Whether this worker takes `queue` (every queue when -Q named none)."""
    consumed = celery.amqp.queues.consume_from
    return not consumed or queue in consumed

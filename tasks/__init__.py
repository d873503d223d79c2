"""Celery wiring: `celery_init_app(app)` and the helpers task modules use.

Task modules declare `@shared_task` with an explicit name (from store.task_names),
`acks_late=True`, `ignore_result=True` and a retry policy; they never import
`webapp`. Each task runs inside the Flask app context, so it gets its own DB
session per run. What giving up means for a task (retries spent, or a worker that
keeps dying) is registered once with `@gives_up(NAME)`.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

import redis
from celery import Celery, Task
from flask import Flask, current_app
from kombu import Exchange, Queue
from kombu.pools import producers
from sqlalchemy.orm import Session

from tasks.broker import broker_ssl, transport_for
from tasks.relay import OutboxRelay
from tasks.schedule import build_beat_schedule
from tasks.timers import PruneCancelledTimers
from documents.storage import BlobStorage, from_config
from store import tracing
from store.outbox import Message, Publisher
from store.task_names import RUN_IMPORT, SCAN_DOCUMENT

log = logging.getLogger(__name__)
STORAGE_KEY = "sluice.storage"
SOURCES_KEY = "sluice.sources"
QUEUES = ("webhooks", "documents", "imports", "cron")
TASK_MODULES = ("tasks.system", "tasks.cron", "tasks.webhooks", "tasks.documents",
                "tasks.imports", "tasks.media")


def broker_url(config: dict[str, Any]) -> str:
    url = config.get("CELERY_BROKER_URL") or config["REDIS_URL"]
    # kombu spells a Redis unix socket differently from redis-py.
    return "redis+socket://" + url[len("unix://"):] if url.startswith("unix://") else url


def celery_config(config: dict[str, Any]) -> dict[str, Any]:
    url = broker_url(config)
    return {
        "broker_url": url,
        "broker_transport": transport_for(url),
        "broker_use_ssl": broker_ssl(url),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "broker_transport_options": {
            # Above the hard time limit, or a late-acked task still running is
            # handed to a second worker (see DESIGN.md, "Celery on Redis").
            "visibility_timeout": config["CELERY_VISIBILITY_TIMEOUT"],
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Handlers spend most of their time waiting on the database, so a core
        # can keep several prefork processes busy.
        "worker_concurrency": config["WORKER_CONCURRENCY"] or 4 * (os.cpu_count() or 1),
        "task_time_limit": config["CELERY_TASK_TIME_LIMIT"],
        "task_soft_time_limit": config["CELERY_TASK_SOFT_TIME_LIMIT"],
        # An exchange and key per queue, so the declared bindings say what routing
        # does (bare Queue(name)s are listed as bound to the default "cron"/"cron").
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name)
                        for name in QUEUES],
        "task_default_queue": "cron",
        "task_routes": {f"sluice.{name}.*": {"queue": name} for name in QUEUES},
        "include": list(TASK_MODULES),
        "task_annotations": {name: {"max_retries": config[setting]}
                             for name, setting in RETRY_LIMITS.items()},
        "beat_schedule": build_beat_schedule(config),
        "beat_schedule_filename": config["BEAT_SCHEDULE_FILE"],
        "timezone": "UTC",
        # Our JSON logging stays in charge of the root logger, and writes to the real
        # stderr: with Celery's stdout redirection, the handler's writes went to a
        # logging proxy that dropped them, and the worker logged nothing of ours.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


# task name -> what giving up means for it, called as fn(session, *args, **kwargs)
GIVE_UP: dict[str, Callable[..., None]] = {}
# task name -> the setting that limits its retries (the rest of each policy is
# declared on the task itself); applied through Celery's task_annotations.
RETRY_LIMITS = {SCAN_DOCUMENT: "DOCUMENT_SCAN_MAX_RETRIES", RUN_IMPORT: "IMPORT_MAX_RETRIES"}


def gives_up(task_name: str):
    """Register how `task_name` gives up for good: its retries are spent, or its
    worker died on every delivery. The function records the domain's final state."""
    def register(give_up: Callable[..., None]) -> Callable[..., None]:
        GIVE_UP[task_name] = give_up
        return give_up
    return register


def give_up(task_name: str, args: tuple, kwargs: dict) -> None:
    handler = GIVE_UP.get(task_name)
    if handler is None:
        return
    session = db_session()
    session.rollback()
    handler(session, *args, **kwargs)
    session.commit()


def lost_too_often(task: Task, args: tuple, kwargs: dict) -> bool:
    """Count a redelivered message; past TASK_MAX_DELIVERIES, give up on it for good.

    acks_late + reject_on_worker_lost put a message back whenever its worker dies,
    so a task that always kills its worker (OOM, a segfault) would come back
    forever. kombu marks such messages `redelivered` but keeps no count, so the
    count lives in Redis under the task id. Only redeliveries pay for it.
    """
    key = f"{config('REDIS_KEY_PREFIX')}deliveries:{task.request.id}"
    try:
        with redis_client().pipeline() as pipe:
            deliveries = 1 + pipe.incr(key).expire(
                key, config("CELERY_VISIBILITY_TIMEOUT")).execute()[0]
    except redis.RedisError:
        return False  # unsure: run it, as without the cap
    log.warning("task redelivered after its worker was lost",
                extra={"task": task.name, "task_id": task.request.id, "delivery": deliveries})
    if deliveries <= config("TASK_MAX_DELIVERIES"):
        return False
    log.error("task abandoned: its worker kept dying",
              extra={"task": task.name, "task_id": task.request.id, "delivery": deliveries})
    give_up(task.name, args, kwargs)
    return True


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                if (self.request.delivery_info or {}).get("redelivered") \
                        and lost_too_often(self, args, kwargs):
                    return None
                return self.run(*args, **kwargs)

        def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
            log.warning("task failed; retrying", extra={
                "task": self.name, "task_id": task_id, "attempt": self.request.retries + 1,
                "error": type(exc).__name__, "task_kwargs": kwargs})

        def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
            # Retries spent (autoretry re-raises the last error), or an error the
            # policy does not retry: record the domain's final state.
            log.error("task failed for good", extra={
                "task": self.name, "task_id": task_id, "error": type(exc).__name__,
                "task_kwargs": kwargs})
            with app.app_context():
                give_up(self.name, args, kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(celery_config(app.config))
    celery.steps["worker"].add(PruneCancelledTimers)
    celery.steps["worker"].add(OutboxRelay)
    celery.flask_app = app  # for worker steps, which are given only the Celery app
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


def outbox_publisher(celery: Celery) -> Publisher:
    """Publish outbox messages without Celery's own publish retries.

    The outbox is the retry: a failed publish leaves the row for the relay, so
    the request that committed it is never held up waiting for the broker.
    """
    # Celery's retry=False still lets kombu retry the *connection* (about 2 s per
    # attempt with the Redis transport); this pool's connections fail at once.
    fail_fast = celery.connection_for_write(transport_options={
        **celery.conf.broker_transport_options, "max_retries": 0})

    def publish(message: Message) -> None:
        options = {"queue": message.queue} if message.queue else {}
        # Whoever publishes the row, and however late, the message continues the
        # trace of the request (or task) that wrote it.
        with tracing.publishing(message.trace_context, message.task_name) as trace_headers, \
                producers[fail_fast].acquire(block=True, timeout=2) as producer:
            celery.send_task(message.task_name, kwargs=message.kwargs, retry=False,
                             producer=producer,
                             headers={"outbox_id": message.id, **trace_headers}, **options)
    return publish


def queue_depths(celery: Celery) -> dict[str, int | None]:
    """Messages waiting in each of our queues, on any broker (None: it did not answer).

    A passive declare answers with the message count on RabbitMQ and on Redis alike;
    a queue the broker does not know (Redis drops an empty list) holds none.
    """
    depths: dict[str, int | None] = dict.fromkeys(QUEUES)
    try:
        with celery.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            for queue in QUEUES:
                channel = connection.channel()  # AMQP closes a channel on a 404
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except connection.channel_errors:
                    depths[queue] = 0
                finally:
                    try:
                        channel.close()
                    except Exception:  # already closed by the broker
                        pass
    except Exception:  # the broker is away: depths unknown, and the page still renders
        log.warning("queue depths unavailable")
    return depths


def db_session() -> Session:
    """The current task's session (closed when its app context ends)."""
    return current_app.extensions["sluice.db"].session


def sources() -> dict:
    """The configured webhook sources (webhooks.sources.Source by name), loaded once
    with the app."""
    return current_app.extensions[SOURCES_KEY]


def redis_client() -> redis.Redis:
    return current_app.extensions["sluice.redis"]


def storage() -> BlobStorage:
    """The app's blob storage, built on first use in this process (after any fork:
    a boto3 client must not be shared with a parent)."""
    state = current_app.extensions.get(STORAGE_KEY)
    if state is None or state[0] != os.getpid():
        state = (os.getpid(), from_config(current_app.config))
        current_app.extensions[STORAGE_KEY] = state
    return state[1]


def config(key: str) -> Any:
    return current_app.config[key]

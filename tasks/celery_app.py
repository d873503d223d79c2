"""Celery wiring: `celery_init_app(app)`, for the processes that run or send tasks.

Worker and beat build it in `tasks.worker`; the CLI commands that publish build it
when they run. The web never does (see `tasks/__init__.py`).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import worker_init
from flask import Flask
from kombu import Exchange, Queue
from kombu.pools import producers

from store import tracing
from store.publishing import Message, Publisher
from tasks import QUEUES, RETRY_LIMITS, TASK_MODULES, run_give_up
from tasks.app_state import config, redis_client
from tasks.broker import broker_ssl, transport_for
from tasks.queue_gauge import QueueDepthGauge
from tasks.relay import OutboxRelay
from tasks.schedule import build_beat_schedule
from tasks.timers import PruneCancelledTimers

log = logging.getLogger(__name__)


def broker_url(config: dict[str, Any]) -> str:
    url = config.get("CELERY_BROKER_URL") or config["REDIS_URL"]
    # kombu spells a Redis unix socket differently from redis-py.
    return "redis+socket://" + url[len("unix://"):] if url.startswith("unix://") else url


def declared_queue(name: str, quorum: bool) -> Queue:
    """One of QUEUES, with an exchange and key of its own, so the declared bindings say
    what routing does (bare Queue(name)s are listed as bound to the default "cron").

    A quorum queue (RabbitMQ, replicated over its cluster) is bound to a topic
    exchange: a retry's countdown then goes through RabbitMQ's native delayed delivery
    (Celery 5.5+), which cannot route through a direct exchange; with one, Celery warns
    and the delayed task waits inside a worker instead, holding its slot."""
    if quorum:
        return Queue(name, Exchange(name, type="topic"), routing_key=name,
                     queue_arguments={"x-queue-type": "quorum"})
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def celery_config(config: dict[str, Any]) -> dict[str, Any]:
    url = broker_url(config)
    # Celery itself turns global QoS off for quorum queues, which refuse it
    # (worker_detect_quorum_queues), and declares the delayed-delivery exchanges.
    quorum = config["CELERY_QUEUE_TYPE"] == "quorum"
    return {
        "broker_url": url,
        "broker_transport": transport_for(url),
        "broker_use_ssl": broker_ssl(url),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "broker_transport_options": {
            # Above the hard time limit, or a late-acked task still running is
            # handed to a second worker (Celery on Redis redelivers unacked messages
            # once the visibility timeout passes).
            "visibility_timeout": config["CELERY_VISIBILITY_TIMEOUT"],
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
            # a publish returns once the quorum has the message, not before
            **({"confirm_publish": True} if quorum else {}),
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
        "task_queues": [declared_queue(name, quorum) for name in QUEUES],
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
    run_give_up(task.name, args, kwargs)
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
                run_give_up(self.name, args, kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(celery_config(app.config))
    celery.steps["worker"].add(PruneCancelledTimers)
    celery.steps["worker"].add(OutboxRelay)
    celery.steps["worker"].add(QueueDepthGauge)
    celery.flask_app = app  # for worker steps, which are given only the Celery app
    if app.config["CELERY_QUEUE_TYPE"] == "quorum":
        worker_init.connect(lambda **_: declare_every_queue(celery), weak=False,
                            dispatch_uid=f"sluice-declare-queues-{id(celery)}")
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


def declare_every_queue(celery: Celery) -> None:
    """Declare every queue, exchange and binding, not only those this worker consumes,
    before the worker starts. Celery's native delayed delivery binds every queue of
    task_queues to its delay exchanges as the worker starts, and one exchange missing
    (the `deliveries` queue, which only the deliver process consumes) makes it give up
    on them all: a countdown would then wait inside a worker, holding a slot."""
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=5)
            channel = connection.default_channel
            for queue in celery.amqp.queues.values():
                queue.bind(channel).declare()
    except Exception as exc:  # noqa: BLE001 - the worker still starts; Celery says the rest
        log.warning("queues not declared before the worker started", extra={
            "error": type(exc).__name__})


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

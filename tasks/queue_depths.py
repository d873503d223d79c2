"""How many messages wait in each queue: measured by the workers, read by the web.

A web process does not talk to the broker (it hands work over by commit, and the
workers' relay publishes), and so it does not load Celery or kombu, which cost each
web process megabytes of memory. The broker's queue depths are measured where a
broker connection already lives: a thread in every worker's main process
(`tasks.queue_gauge`) measures them every QUEUE_DEPTH_INTERVAL seconds and keeps
them in Redis for a few intervals; `/metrics` and the ops console read them from
there. Several workers write the same key, each the whole picture of one broker.

While no worker runs, the figures expire and the depths are unknown: nothing
publishes then either (the relay runs on the workers), and the outbox backlog
gauges say that work is waiting.

This module imports neither Celery nor kombu; the web imports it.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import redis

from tasks import QUEUES

log = logging.getLogger(__name__)

KEY = "queue_depths"
INTERVALS_KEPT = 3  # the figures outlive a worker that stopped by this many intervals


def measure(celery: Any) -> dict[str, int]:
    """Messages waiting in each of our queues, on any broker; raises while it is away.

    A passive declare answers with the message count on RabbitMQ and on Redis alike;
    a queue the broker does not know (Redis drops an empty list) holds none.
    """
    depths = {}
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
    return depths


def record(client: redis.Redis, prefix: str, depths: dict[str, int], interval: float) -> None:
    """Keep what `measure` found for INTERVALS_KEPT intervals."""
    client.set(prefix + KEY, json.dumps(depths),
               px=int(1000 * max(interval * INTERVALS_KEPT, 1)))


def recorded(client: redis.Redis, prefix: str) -> dict[str, int | None]:
    """The depths a worker measured last, by queue (None: unknown, no worker has said
    lately, or Redis did not answer)."""
    depths: dict[str, int | None] = dict.fromkeys(QUEUES)
    try:
        raw = client.get(prefix + KEY)
    except redis.RedisError:
        log.warning("queue depths unavailable: Redis did not answer")
        return depths
    if raw:
        found = json.loads(raw)
        depths.update({queue: int(found[queue]) for queue in QUEUES if queue in found})
    return depths

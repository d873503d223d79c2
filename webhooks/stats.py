"""What happened to deliveries per source, over the last hour and the last day.

Accepted deliveries are rows in webhook_events, counted there. What stores nothing
(duplicates, failed signatures, rate limits, refused payloads) is counted in Redis,
in 5-minute buckets that expire after two days: one pipelined round trip, on those
paths only, never on the accepted one. Counting is best effort: Redis away loses
a count, never a delivery.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any, Iterable

import redis
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from webhooks.models import DEAD, FAILED, PROCESSED, RECEIVED, WebhookEvent

BUCKET_SECONDS = 300
KEEP_SECONDS = 2 * 24 * 3600
UNSTORED = ("duplicate", "signature_failed", "rate_limited", "invalid_payload")
WINDOWS = {"hour": 3600, "day": 24 * 3600}


def _key(prefix: str, source: str, outcome: str, bucket: int) -> str:
    return f"{prefix}stats:deliveries:{source}:{outcome}:{bucket}"


def count(client: redis.Redis, prefix: str, source: str, outcome: str,
          now: float | None = None) -> None:
    """Count one delivery that stored nothing; a Redis failure is swallowed."""
    bucket = int((now or time.time()) // BUCKET_SECONDS)
    key = _key(prefix, source, outcome, bucket)
    try:
        client.pipeline(transaction=False).incr(key).expire(key, KEEP_SECONDS).execute()
    except redis.RedisError:
        pass


def unstored(client: redis.Redis, prefix: str, sources: Iterable[str],
             now: float | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """{source: {window: {outcome: n}}} for every outcome in UNSTORED (one MGET)."""
    sources, last = list(sources), int((now or time.time()) // BUCKET_SECONDS)
    buckets = range(last - WINDOWS["day"] // BUCKET_SECONDS + 1, last + 1)
    keys = [(source, outcome, bucket) for source in sources for outcome in UNSTORED
            for bucket in buckets]
    try:
        values = client.mget([_key(prefix, *key) for key in keys]) if keys else []
    except redis.RedisError:
        values = [None] * len(keys)
    totals = {source: {window: dict.fromkeys(UNSTORED, 0) for window in WINDOWS}
              for source in sources}
    for (source, outcome, bucket), value in zip(keys, values):
        for window, seconds in WINDOWS.items():
            if value and bucket > last - seconds // BUCKET_SECONDS:
                totals[source][window][outcome] += int(value)
    return totals


def stored(session: Session, now: dt.datetime) -> dict[str, dict[str, dict[str, int]]]:
    """{source: {window: {accepted, processed, failed, dead}}} from webhook_events."""
    since = now - dt.timedelta(seconds=WINDOWS["day"])
    hour = now - dt.timedelta(seconds=WINDOWS["hour"])
    in_hour = WebhookEvent.received_at >= hour
    rows = session.execute(
        select(WebhookEvent.source, WebhookEvent.status, func.count(),
               func.sum(case((in_hour, 1), else_=0)))
        .where(WebhookEvent.received_at >= since)
        .group_by(WebhookEvent.source, WebhookEvent.status)).all()
    totals: dict[str, dict[str, dict[str, int]]] = {}
    for source, status, day, last_hour in rows:
        windows = totals.setdefault(source, {window: {
            "accepted": 0, PROCESSED: 0, FAILED: 0, DEAD: 0} for window in WINDOWS})
        for window, n in (("day", day), ("hour", int(last_hour or 0))):
            windows[window]["accepted"] += n
            if status in (PROCESSED, FAILED, DEAD):
                windows[window][status] += n
    return totals


def backlog_by_source(session: Session) -> dict[str, dict[str, Any]]:
    """{source: {"oldest_unprocessed": when or None, "dead": n}} over every stored event."""
    waiting = dict(session.execute(
        select(WebhookEvent.source, func.min(WebhookEvent.received_at))
        .where(WebhookEvent.status.in_((RECEIVED, FAILED))).group_by(WebhookEvent.source)).all())
    dead = dict(session.execute(select(WebhookEvent.source, func.count())
                                .where(WebhookEvent.status == DEAD)
                                .group_by(WebhookEvent.source)).all())
    return {source: {"oldest_unprocessed": waiting.get(source), "dead": dead.get(source, 0)}
            for source in set(waiting) | set(dead)}

"""Rate limiting: flask-limiter's setup, and the budgets a view spends itself.

Route limits are flask-limiter decorators. A webhook delivery, though, spends its
provider's quota only after its signature has been verified, and a forged one
spends its sender's budget instead. flask-limiter's context manager would do that,
but on every use it walks the stack and resolves the route's limits again, which
costs as much CPU as the Redis round trip itself, on the busiest route. So these
budgets go to `limits`, the library flask-limiter is built on, directly:
flask-limiter's own storage (one Redis pool), strategy and key prefix, and the same
policy when Redis is away: fail open to a per-process in-memory budget, count it in
sluice_rate_limit_fallback_total, and try Redis again after RECHECK_SECONDS.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Callable

from flask import Flask, current_app, g
from flask_limiter import Limiter
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import STRATEGIES
from prometheus_client import Counter

from webapp.errors import APIError, rate_limit_headers

log = logging.getLogger(__name__)
BUDGETS_KEY = "sluice.budgets"
RECHECK_SECONDS = 1.0
FALLBACK_FLAG = "_sluice_rate_limit_fallback"
RATE_LIMIT_FALLBACK = Counter(
    "sluice_rate_limit_fallback_total",
    "Requests rate-limited from per-process memory because Redis was unreachable")


class OverBudget(APIError):
    def __init__(self, item: RateLimitItem):
        super().__init__(429, "rate_limited", str(item), rate_limit_headers(item))


class Budget:
    """One named budget: `limit()` gives its rate ("100/minute"), `key()` the bucket."""

    def __init__(self, name: str, limit: Callable[[], str], key: Callable[[], str]):
        self.name, self.limit, self.key = name, limit, key

    def spend(self) -> None:
        """Spend one unit of this request's bucket, or raise OverBudget (a 429)."""
        item = _parsed(self.limit())
        if not current_app.extensions[BUDGETS_KEY].hit(item, self.name, self.key()):
            raise OverBudget(item)


@functools.lru_cache(maxsize=256)
def _parsed(limit: str) -> RateLimitItem:
    return parse(limit)


class Budgets:
    """The strategies of one app: on Redis, and in memory while Redis is away."""

    def __init__(self, app: Flask, storage):
        strategy = STRATEGIES[app.config["RATELIMIT_STRATEGY"]]
        self.shared = strategy(storage)
        self.local = strategy(MemoryStorage())
        self.prefix = app.config["RATELIMIT_KEY_PREFIX"]
        self.recheck_at = 0.0  # monotonic time from which to try Redis again

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        if time.monotonic() >= self.recheck_at:
            try:
                allowed = self.shared.hit(item, self.prefix, *identifiers)
            except Exception as exc:  # any storage failure: redis-py, or limits' own
                if not self.recheck_at:
                    log.warning("rate limit storage unreachable; falling back to in-memory "
                                "storage", extra={"error": type(exc).__name__})
                self.recheck_at = time.monotonic() + RECHECK_SECONDS
            else:
                if self.recheck_at:
                    log.info("rate limit storage recovered")
                    self.recheck_at = 0.0
                return allowed
        g.setdefault(FALLBACK_FLAG, True)
        return self.local.hit(item, self.prefix, *identifiers)


def init_rate_limits(app: Flask, limiter: Limiter) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", _limits_url(app.config["REDIS_URL"]))
    app.config.setdefault("RATELIMIT_KEY_PREFIX", app.config["REDIS_KEY_PREFIX"] + "rl")
    # O(1) Redis memory per key, unlike the moving window (flask-limiter's docs).
    app.config.setdefault("RATELIMIT_STRATEGY", "sliding-window-counter")
    # Rate-limit headers on every response cost a Redis round trip each; the 429
    # itself carries Retry-After and the limit (webapp/errors.py).
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    # Redis down must not turn every limited route into a 500: fail open to a
    # per-process in-memory budget (which multiplies the limit by the number of
    # processes while Redis is away).
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    # A hung Redis must not hang requests: give up quickly and fall back.
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS",
                          {"socket_connect_timeout": 0.5, "socket_timeout": 0.5})
    limiter.init_app(app)
    if not any(app.config.get(name) for name in
               ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")):
        # flask-limiter's app-wide before-request pass applies default, application
        # and meta limits; Sluice configures none (every limit is on its route, and
        # a decorated route checks its own in its wrapper), yet the pass resolves
        # them on every request. Without such limits it has nothing to do.
        app.before_request_funcs[None].remove(limiter._check_request_limit)
    app.extensions[BUDGETS_KEY] = Budgets(app, limiter.storage)

    @app.after_request
    def count_fallback(response):
        # flask-limiter keeps no public flag or hook for "Redis is down, using
        # memory"; the budgets mark the request themselves. Once per request.
        if g.pop(FALLBACK_FLAG, False) or getattr(limiter, "_storage_dead", False):
            RATE_LIMIT_FALLBACK.inc()
        return response


def _limits_url(redis_url: str) -> str:
    """`limits` spells a Unix socket redis+unix://, where redis-py says unix://."""
    return ("redis+unix://" + redis_url[len("unix://"):] if redis_url.startswith("unix://")
            else redis_url)

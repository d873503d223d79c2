"""One Redis lock per job: token-checked, expiring, kept alive by a heartbeat, fenced.

Built on redis-py's `Lock` (SET NX PX with a random token; extend and release by
Lua only while the token matches) with the pitfalls from DESIGN.md closed:

- it always has a TTL, sized to the heartbeat, so a crashed or SIGKILLed holder
  frees it within `ttl` seconds;
- `thread_local=False`, or the heartbeat thread could not see the token;
- a heartbeat that fails to extend sets `lost`, and the job must stop (another
  holder may already be running);
- every acquisition takes a fencing token (`INCR`): a late holder whose lock
  expired carries a smaller token than the new one, so fenced writes refuse it.
"""
from __future__ import annotations

import logging
import threading

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)


class JobLock:
    def __init__(self, client: redis.Redis, job: str, *, ttl: float, prefix: str = "sluice:"):
        self.job = job
        self.ttl = ttl
        self._client = client
        self._fence_key = f"{prefix}cron:fence:{job}"
        self._lock = client.lock(f"{prefix}cron:lock:{job}", timeout=ttl, thread_local=False,
                                 raise_on_release_error=False)
        self.fence: int | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self, wait: float = 0) -> bool:
        """Take the lock (waiting up to `wait` seconds); False if someone holds it."""
        if not self._lock.acquire(blocking=wait > 0, blocking_timeout=wait or None):
            return False
        self.fence = int(self._client.incr(self._fence_key))
        self._heartbeat = threading.Thread(target=self._beat, name=f"lock-{self.job}",
                                           daemon=True)
        self._heartbeat.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.extend(self.ttl, replace_ttl=True)
            except (LockError, redis.RedisError) as exc:
                log.error("job lock lost; the job must stop",
                          extra={"job": self.job, "error": type(exc).__name__})
                self.lost.set()
                return

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.ttl)
        try:
            self._lock.release()  # only if the token is still ours
        except redis.RedisError as exc:  # it expires by itself within ttl
            log.warning("could not release job lock",
                        extra={"job": self.job, "error": type(exc).__name__})

"""One Redis lock per job: token-checked, expiring, kept alive by a heartbeat, fenced.

Three Lua scripts, each one round trip and atomic:

- acquire: SET key token NX PX ttl and, only if that succeeded, INCR the job's
  fencing counter. A late holder whose lock expired carries a smaller fence than
  the new one; each run records its fence in job_runs, so the history shows which
  holder did what.
- extend and release: only while the key still holds our token, so nobody ever
  frees or prolongs someone else's lock (the plain-DEL pitfall of celery-once).

The usual Redis-lock pitfalls are closed: there is always a TTL, sized to the
heartbeat, so a crashed or SIGKILLed holder frees it within `ttl` seconds; the
token lives on the object, not in a thread-local, so the heartbeat thread can
use it; and a heartbeat that fails to extend sets `lost`, and the job must stop
(another holder may already be running).

(redis-py's Lock does the token part too, but taking the fence with it costs a
second round trip; bench/lock measures the difference.)
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time

import redis

log = logging.getLogger(__name__)

_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return redis.call('incr', KEYS[2])
end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def lock_key(prefix: str, job: str) -> str:
    return f"{prefix}cron:lock:{job}"


def held_for(client: redis.Redis, job: str, prefix: str = "sluice:") -> float | None:
    """Seconds until the job's lock lapses if nobody renews it; None when it is free."""
    remaining = client.pttl(lock_key(prefix, job))
    return remaining / 1000 if remaining and remaining > 0 else None


class JobLock:
    def __init__(self, client: redis.Redis, job: str, *, ttl: float, prefix: str = "sluice:"):
        self.job = job
        self.ttl = ttl
        self.key = lock_key(prefix, job)
        self._fence_key = f"{prefix}cron:fence:{job}"
        self._token = secrets.token_hex(16)
        self._acquire = client.register_script(_ACQUIRE)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self.fence: int | None = None
        self.lost = threading.Event()
        self._mutex = threading.Lock()   # a beat and the release never interleave
        self._held = False
        self.next_beat = 0.0

    def acquire(self, wait: float = 0) -> bool:
        """Take the lock (waiting up to `wait` seconds); False if someone holds it."""
        deadline = time.monotonic() + wait
        while True:
            fence = int(self._acquire(keys=[self.key, self._fence_key],
                                      args=[self._token, int(self.ttl * 1000)]))
            if fence:
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        self.fence, self._held = fence, True
        heartbeats.add(self)
        return True

    def beat(self) -> None:
        """Extend the TTL; on failure mark the lock lost (called by the heartbeat)."""
        with self._mutex:
            if not self._held:
                return
            try:
                extended = self._extend(keys=[self.key],
                                        args=[self._token, int(self.ttl * 1000)])
                error = "token no longer ours"
            except redis.RedisError as exc:
                extended, error = 0, type(exc).__name__
            if not extended:
                log.error("job lock lost; the job must stop",
                          extra={"job": self.job, "error": error})
                self._held = False
                self.lost.set()

    def release(self) -> None:
        heartbeats.discard(self)
        with self._mutex:
            was_held, self._held = self._held, False
            if not was_held:
                return
            try:
                self._release(keys=[self.key], args=[self._token])
            except redis.RedisError as exc:  # it expires by itself within ttl
                log.warning("could not release job lock",
                            extra={"job": self.job, "error": type(exc).__name__})


class Heartbeats:
    """One thread per process extends every held lock every ttl/3 seconds.

    A thread per lock would cost more than the lock's own round trips.
    """

    def __init__(self):
        self._locks: set[JobLock] = set()
        self._changed = threading.Condition()
        self._pid: int | None = None

    def add(self, lock: JobLock) -> None:
        with self._changed:
            if self._pid != os.getpid():  # first lock in this process (or after a fork)
                self._pid, self._locks = os.getpid(), set()
                threading.Thread(target=self._run, name="job-lock-heartbeat",
                                 daemon=True).start()
            lock.next_beat = time.monotonic() + lock.ttl / 3
            self._locks.add(lock)
            self._changed.notify()

    def discard(self, lock: JobLock) -> None:
        with self._changed:
            self._locks.discard(lock)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [lock for lock in self._locks if lock.next_beat <= now]
                if not due:
                    upcoming = min((lock.next_beat for lock in self._locks), default=now + 60)
                    self._changed.wait(upcoming - now)
                    continue
                for lock in due:
                    lock.next_beat = now + lock.ttl / 3
            for lock in due:  # outside the condition, so acquire() never waits on Redis
                lock.beat()


heartbeats = Heartbeats()

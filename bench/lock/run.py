"""Job lock acquire+release latency against a bare SET NX PX / DEL pair (`make bench`).

Both on loopback Redis in the same run. The job lock also takes a fencing token
(in the same Lua script) and registers with the per-process heartbeat, so it
does more than the pair: the target is an overhead of at most 2x.

Environment: BENCH_REDIS_URL (default redis://127.0.0.1:6379/12).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cron.lock import JobLock  # noqa: E402

ROUNDS = 5000


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3


def bare_pair(client: redis.Redis) -> list[float]:
    samples = []
    for i in range(ROUNDS):
        started = time.perf_counter()
        assert client.set("bench:bare", str(i), nx=True, px=30000)
        client.delete("bench:bare")
        samples.append(time.perf_counter() - started)
    return samples


def job_lock(client: redis.Redis) -> list[float]:
    samples = []
    for _ in range(ROUNDS):
        lock = JobLock(client, "bench", ttl=30, prefix="bench:")
        started = time.perf_counter()
        assert lock.acquire()
        lock.release()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL",
                                                 "redis://127.0.0.1:6379/12"))
    client.flushdb()
    bare_pair(client), job_lock(client)  # warm-up
    bare_p50, bare_p99 = percentiles(bare_pair(client))
    lock_p50, lock_p99 = percentiles(job_lock(client))
    print("\n== bench/lock ==")
    print(f"{ROUNDS} acquire+release rounds on loopback Redis")
    print(f"bare SET NX PX + DEL   p50 {bare_p50:.3f} ms  p99 {bare_p99:.3f} ms")
    print(f"JobLock (fenced, hb)   p50 {lock_p50:.3f} ms  p99 {lock_p99:.3f} ms")
    print(f"overhead               p50 {lock_p50 / bare_p50:.2f}x  p99 {lock_p99 / bare_p99:.2f}x"
          "   (target <= 2x)")
    print(f"RESULT lock p50_ratio={lock_p50 / bare_p50:.2f} p99_ratio={lock_p99 / bare_p99:.2f}")


if __name__ == "__main__":
    main()

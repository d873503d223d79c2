"""Soak benchmark (`make bench`): does any process grow with the work it does?

1. Worker: SOAK_TASKS (default 100,000) `sluice.ping` tasks through the real worker
   (the Procfile's command, prefork, 2 processes, PostgreSQL and Redis), sent in 20
   batches; after each batch drains, the RSS of the main (consumer) process and of
   each pool process is sampled.
2. Baseline: the same number of no-op tasks through plain Celery with the same
   settings (bench/soak/baseline.py), sampled the same way.
3. Web: SOAK_DELIVERIES (default 100,000) signed Stripe deliveries through gunicorn
   (gunicorn.conf.py) with wrk, in batches signed just before they are sent, and
   the gunicorn workers' RSS after each.

Growth is measured after a warm-up (the first quarter of the batches) and reported
per 100,000, as the least-squares slope of the samples.
Target: the worker's main and pool processes grow at most 2 MB per 100k tasks more
than the baseline's main process.

Environment: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test),
BENCH_REDIS_URL (default redis://127.0.0.1:6379/13), SOAK_TASKS, SOAK_DELIVERIES.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
from celery import Celery

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import fresh_services  # noqa: E402
from bench.ingest.run import presigned, serve, web_env, wrk  # noqa: E402
from tests.e2e.harness import Stack  # noqa: E402
from tests.services import free_port, wait_for  # noqa: E402

TASKS = int(os.environ.get("SOAK_TASKS", "100000"))
DELIVERIES = int(os.environ.get("SOAK_DELIVERIES", "100000"))
BATCHES = 20
PER_100K = 100_000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise LookupError(pid)


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def growth_per_100k(samples: list[tuple[int, float]]) -> float:
    """MB per 100k after the warm-up (the first quarter of the samples, where caches
    and the allocator's arenas fill): the least-squares slope of the rest."""
    rest = samples[len(samples) // 4:]
    xs, ys = [n for n, _ in rest], [mb for _, mb in rest]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / \
        sum((x - mean_x) ** 2 for x in xs)
    return slope * PER_100K


def soak_tasks(process: subprocess.Popen, send, drained, label: str) -> dict:
    """Send TASKS in batches; after each drains, sample the main and pool RSS."""
    wait_for(lambda: len(children(process.pid)) >= 2, timeout=60, what=f"{label} pool")
    main, pool = [], []
    per_batch, sent = TASKS // BATCHES, 0
    started = time.monotonic()
    for _batch in range(BATCHES):
        send(per_batch)
        sent += per_batch
        wait_for(drained, timeout=600, interval=0.2, what=f"{label} to drain")
        assert process.poll() is None, f"{label} exited"
        main.append((sent, rss_mb(process.pid)))
        pool.append((sent, statistics.fmean(rss_mb(child) for child in children(process.pid))))
    elapsed = time.monotonic() - started
    print(f"{label}: {sent} tasks in {elapsed:.0f}s ({sent / elapsed:.0f}/s); main RSS MB "
          f"{' '.join(f'{mb:.1f}' for _, mb in main)}; pool (mean of processes) "
          f"{pool[0][1]:.1f} -> {pool[-1][1]:.1f}", flush=True)
    return {"main": growth_per_100k(main), "pool": growth_per_100k(pool),
            "main_mb": (main[0][1], main[-1][1])}


def publisher(broker_url: str, task: str, queue: str):
    app = Celery(broker=broker_url)
    app.conf.task_serializer = "json"
    tokens = {"last": None}

    def send(count: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                tokens["last"] = uuid.uuid4().hex
                app.send_task(task, kwargs={"token": tokens["last"]}, queue=queue,
                              producer=producer)
    return send, tokens


def worker_soak(workdir: Path, env: dict, redis_url: str) -> dict:
    client = redis.Redis.from_url(redis_url)
    stack = Stack(workdir / "worker", env, printed_log_lines=0)
    stack.start("worker")
    send, tokens = publisher(redis_url, "sluice.ping", "documents")
    try:
        # A ping leaves a key in Redis; the batch is done when its last one has.
        return soak_tasks(stack.processes["worker"], send,
                          lambda: client.exists(f"sluice:ping:{tokens['last']}"), "sluice worker")
    finally:
        stack.stop()


def baseline_soak(workdir: Path, env: dict, redis_url: str) -> dict:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    stack = Stack(workdir / "baseline", {**env, "BENCH_BROKER_URL": redis_url},
                  printed_log_lines=0)
    stack.start("baseline", command=["celery", "-A", "bench.soak.baseline", "worker", "-Q",
                                     "soak-baseline", "-c", "2", "-P", "prefork",
                                     "--loglevel", "WARNING"])
    send, _tokens = publisher(redis_url, "soak.noop", "soak-baseline")
    try:
        # Drained: nothing waiting and nothing delivered but unacknowledged.
        return soak_tasks(stack.processes["baseline"], send,
                          lambda: client.llen("soak-baseline") == 0
                          and client.zcard("unacked_index") == 0, "plain celery")
    finally:
        stack.stop()


def web_soak(workdir: Path, env: dict) -> dict:
    web = serve(workdir / "web", {**env, "PORT": str(free_port())})
    master = web.processes["web"].pid
    samples, sent, batch = [], 0, 0
    try:
        while sent < DELIVERIES:
            requests_file = presigned(workdir / f"soak-{batch}.tsv", 12_000, f"soak{batch}")
            run = wrk(web.port, requests_file, 10)
            assert run["errors"] == 0, run
            sent += run["requests"]
            batch += 1
            samples.append((sent, statistics.fmean(rss_mb(pid) for pid in children(master))))
    finally:
        web.stop()
    print(f"web: {sent} deliveries in {batch} batches; gunicorn worker RSS MB (mean) "
          f"{' '.join(f'{mb:.1f}' for _, mb in samples)}", flush=True)
    return {"growth": growth_per_100k(samples), "deliveries": sent,
            "mb": (samples[0][1], samples[-1][1])}


def main() -> None:
    workdir, database_url, redis_url = fresh_services("sluice-soak", redis_db=13)
    env = {**web_env(workdir, database_url, redis_url), "WORKER_CONCURRENCY": "2"}
    Stack(workdir, env).release()

    sluice = worker_soak(workdir, env, redis_url)
    baseline = baseline_soak(workdir, env, redis_url)
    web = web_soak(workdir, env)

    print("\n== bench/soak ==")
    print(f"worker main process: {sluice['main']:+.2f} MB per 100k tasks after warm-up "
          f"({sluice['main_mb'][0]:.1f} -> {sluice['main_mb'][1]:.1f} MB)")
    print(f"worker pool processes: {sluice['pool']:+.2f} MB per 100k tasks")
    print(f"plain celery main process: {baseline['main']:+.2f} MB per 100k tasks "
          f"({baseline['main_mb'][0]:.1f} -> {baseline['main_mb'][1]:.1f} MB); pool "
          f"{baseline['pool']:+.2f}")
    print(f"gunicorn workers: {web['growth']:+.2f} MB per 100k deliveries "
          f"({web['mb'][0]:.1f} -> {web['mb'][1]:.1f} MB)")
    print(f"target: main and pool within +2 MB per 100k of the baseline's main "
          f"(main {sluice['main'] - baseline['main']:+.2f}, "
          f"pool {sluice['pool'] - baseline['main']:+.2f})")
    print(f"RESULT soak main_growth_mb_per_100k={sluice['main']:.2f} "
          f"baseline_growth_mb_per_100k={baseline['main']:.2f} "
          f"pool_growth_mb_per_100k={sluice['pool']:.2f} "
          f"web_growth_mb_per_100k={web['growth']:.2f} tasks={TASKS} "
          f"deliveries={web['deliveries']}")


if __name__ == "__main__":
    main()

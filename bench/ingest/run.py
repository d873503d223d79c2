"""Webhook ingest and drain benchmark (`make bench`).

1. Ingest: gunicorn with the production config (gunicorn.conf.py), PostgreSQL and
   Redis; wrk posts signed ~1.5 KB Stripe-style deliveries, each a new event, at
   64 connections. The baseline is a bare Flask endpoint on the same gunicorn
   config, measured in the same run. The worker is not running meanwhile, so the
   web process has the machine's cores to itself, as the baseline does.
2. Drain: 10,000 accepted events, then the worker starts; events/s from the first
   to the last processed_at.

Environment: BENCH_DATABASE_URL (a PostgreSQL database it may create databases
next to, default postgresql://postgres@127.0.0.1:5432/test), BENCH_REDIS_URL
(default redis://127.0.0.1:6379/12), BENCH_SECONDS (default 15).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.harness import Stack, clean_environment  # noqa: E402
from tests.e2e.webhook_load import deliver, payment_event  # noqa: E402
from tests.services import fresh_postgres_database, free_port, wait_for  # noqa: E402
from tests.webhooks import signing  # noqa: E402

HERE = Path(__file__).resolve().parent
SECRET = "whsec_bench_secret"
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
CONNECTIONS = 64
DRAIN_EVENTS = 10_000
PAD = 1100  # brings a delivery to about 1.5 KB
SOURCES = """
[sources.stripe]
scheme = "stripe"
secrets_env = ["BENCH_STRIPE_SECRET"]
rate_limit = "100000000/minute"
"""


def presigned(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            body = payment_event(f"evt_bench_{i}", f"pi_bench_{i}", pad=PAD)
            signature = signing.stripe_headers(body, SECRET)["Stripe-Signature"]
            out.write(f"{signature}\t{body.decode()}\n")


def wrk(port: int, requests_file: Path, seconds: int) -> dict:
    threads = 2
    output = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency",
         "-s", str(HERE / "replay.lua"), f"http://127.0.0.1:{port}", "--",
         str(requests_file), str(threads)],
        capture_output=True, text=True, check=True).stdout

    def ms(label):
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "requests": int(re.search(r"(\d+) requests in", output).group(1)),
            "p50": ms("50"), "p99": ms("99"),
            "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else "none"}


def web_env(workdir: Path, database_url: str, redis_url: str) -> dict:
    (workdir / "sources.toml").write_text(SOURCES)
    return clean_environment(
        DATABASE_URL=database_url, REDIS_URL=redis_url, SECRET_KEY="bench",
        SLUICE_INSTANCE_PATH=str(workdir / "instance"),
        SLUICE_SOURCES_FILE=str(workdir / "sources.toml"),
        BENCH_STRIPE_SECRET=SECRET, PORT=str(free_port()), LOG_LEVEL="WARNING",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"))


def serve(workdir: Path, env: dict, *argv: str) -> Stack:
    stack = Stack(workdir, env)
    stack.start("web", command=list(argv) if argv else None)
    wait_for(lambda: _answers(stack), timeout=60, what="gunicorn")
    return stack


def _answers(stack: Stack) -> bool:
    stack.assert_running()
    try:
        return requests.post(stack.url("/webhooks/stripe"), data=b"{}", timeout=2).ok or True
    except requests.RequestException:
        return False


def count(engine, sql: str) -> int:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar()


def main() -> None:
    base_db = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    database_url = fresh_postgres_database(base_db, "sluice_bench")
    redis.Redis.from_url(redis_url).flushdb()
    env = web_env(workdir, database_url, redis_url)
    Stack(workdir, env).release()
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))

    requests_file = workdir / "deliveries.tsv"
    presigned(requests_file, 120_000)
    size = len(payment_event("evt_bench_0", "pi_bench_0", pad=PAD))

    baseline = serve(workdir / "baseline", env, "gunicorn", "-c", "gunicorn.conf.py",
                     "bench.ingest.baseline:app")
    wrk(baseline.port, requests_file, 3)  # warm-up
    base = wrk(baseline.port, requests_file, SECONDS)
    baseline.stop()

    web = serve(workdir / "web", env)
    wrk(web.port, requests_file, 3)  # warm-up (these events count as stored too)
    ingest = wrk(web.port, requests_file, SECONDS)
    web.stop()
    stored = count(engine, "SELECT count(*) FROM webhook_events")

    # Drain: a fresh 10,000 accepted events, then the worker.
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE webhook_events, payments, outbox"))
    redis.Redis.from_url(redis_url).flushdb()
    web = serve(workdir / "drain-web", env)
    bodies = [payment_event(f"evt_drain_{i}", f"pi_drain_{i}", pad=PAD)
              for i in range(DRAIN_EVENTS)]
    statuses = deliver(web.url("/webhooks/stripe"), bodies, SECRET, connections=32)
    web.stop()
    worker = Stack(workdir / "worker", env).start("worker")
    wait_for(lambda: count(engine, "SELECT count(*) FROM webhook_events "
                                   "WHERE status = 'processed'") == DRAIN_EVENTS,
             timeout=600, interval=0.5, what="the drain")
    worker.stop()
    span = count(engine, "SELECT extract(epoch FROM max(processed_at) - min(processed_at)) "
                         "FROM webhook_events")
    drain_rate = (DRAIN_EVENTS - 1) / float(span)

    print("\n== bench/ingest ==")
    print(f"machine: {os.cpu_count()} cores; gunicorn.conf.py; {CONNECTIONS} connections; "
          f"{SECONDS}s per run; delivery {size} bytes")
    print(f"baseline (bare Flask)  {base['rps']:8.0f} req/s  p50 {base['p50']:6.2f} ms  "
          f"p99 {base['p99']:6.2f} ms  errors {base['errors']}")
    print(f"ingest (verify+store)  {ingest['rps']:8.0f} req/s  p50 {ingest['p50']:6.2f} ms  "
          f"p99 {ingest['p99']:6.2f} ms  errors {ingest['errors']} "
          f"(socket: {ingest['socket_errors']})")
    print(f"ratio ingest/baseline  {ingest['rps'] / base['rps']:.2f}   (target >= 0.5, "
          f"p99 <= 50 ms, 0 errors)")
    print(f"events stored: {stored} (all distinct until the pre-signed set runs out)")
    print(f"drain: {DRAIN_EVENTS} events accepted ({dict(statuses)}), worker processed them "
          f"in {float(span):.1f}s = {drain_rate:.0f} events/s (target >= 500)")


if __name__ == "__main__":
    main()

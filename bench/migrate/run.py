"""Migration benchmark (`make bench`): a populated webhook_events moves to its key
table and into partitions without downtime (migration 0028, `flask db
partition-events`).

1. A PostgreSQL database migrated to 0027, the release before, and filled
   server-side with MIGRATE_ROWS (default 10,000,000) finished events over the last
   65 days, as bench/scale fills.
2. `flask db upgrade` (0028: the key-claiming trigger, then every key copied in
   batches) while a writer inserts as the release before does, one
   `INSERT ... ON CONFLICT (source, event_key) DO NOTHING` at a time: its latency
   (p99 and max) before and during, and its errors.
3. A web server of this release on that database: wrk for BENCH_SECONDS, then wrk
   again, round after round, while `flask db partition-events` runs: the slowest
   round's req/s and the worst p99, during / before, and errors; how long the command
   took, and how long it held the table (it says).
4. Every event has its key, and every event is in the first partition.

Environment: as bench/ingest (BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_SECONDS),
and MIGRATE_ROWS.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import fresh_services  # noqa: E402
from bench.ingest.run import SECONDS, presigned, serve, web_env, wrk  # noqa: E402
from bench.scale.run import EVENTS, fill  # noqa: E402
from tests.e2e.harness import REPO  # noqa: E402
from webapp.migrate import upgrade  # noqa: E402

ROWS = int(os.environ.get("MIGRATE_ROWS", "10000000"))
OLD_INSERT = ("INSERT INTO webhook_events (source, event_key, kind, provider, received_at, "
              "enqueued_at, headers, status, attempts) VALUES ('stripe', %s, 'payment', "
              "'stripe', now(), now(), '{}', 'processed', 1) "
              "ON CONFLICT (source, event_key) DO NOTHING")


class OldWriter(threading.Thread):
    """Inserts as a process of the release before 0028 does, one delivery at a time."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.latencies, self.errors = url, [], 0
        self.stopping = threading.Event()

    def run(self) -> None:
        plain = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(plain, autocommit=True) as connection:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    connection.execute(OLD_INSERT, (f"evt_old_{uuid.uuid4().hex}",))
                except psycopg.Error:
                    self.errors += 1
                self.latencies.append((started, time.monotonic() - started))
                time.sleep(0.002)

    def between(self, start: float, end: float) -> list[float]:
        return sorted(1000 * seconds for at, seconds in self.latencies if start <= at < end)


def p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0


def main() -> None:
    workdir, url, redis_url = fresh_services("sluice-migrate", redis_db=12)
    env = web_env(workdir, url, redis_url)
    upgrade(url, "0027")
    engine = create_engine(url)
    print(f"filling webhook_events (at 0027) with {ROWS:,} rows", flush=True)
    fill_seconds = fill(engine, text(EVENTS), ROWS)  # and VACUUM ANALYZE

    writer = OldWriter(url)
    writer.start()
    time.sleep(5)
    started = time.monotonic()
    upgrade(url)
    upgraded = time.monotonic()
    time.sleep(2)
    writer.stopping.set()
    writer.join()
    before, during = writer.between(0, started), writer.between(started, upgraded)

    server = serve(workdir / "web", env)
    per_run = max(20_000, 1500 * SECONDS)
    wrk(server.port, presigned(workdir / "warm.tsv", per_run, "warm"), 3)
    quiet = wrk(server.port, presigned(workdir / "quiet.tsv", per_run, "quiet"), SECONDS)
    log = open(workdir / "partition.log", "w")
    command_started = time.monotonic()
    command = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "webapp", "db", "partition-events"],
        cwd=REPO, env={**env, "MIGRATION_DATABASE_URL": url}, stdout=log,
        stderr=subprocess.STDOUT, text=True)
    busy_runs = []
    while command.poll() is None:  # wrk rounds until the command has finished
        busy_runs.append(wrk(server.port, presigned(
            workdir / f"busy-{len(busy_runs)}.tsv", per_run, f"busy{len(busy_runs)}"), SECONDS))
    command_seconds = time.monotonic() - command_started
    busy = {"rps": min(run["rps"] for run in busy_runs),
            "p99": max(run["p99"] for run in busy_runs),
            "errors": sum(run["errors"] for run in busy_runs)}
    server.stop()
    said = (workdir / "partition.log").read_text()
    locked = re.search(r"locked (\d+) ms", said)

    with engine.connect() as connection:
        events, keyed, first = connection.execute(text(
            "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM "
            "webhook_events e JOIN webhook_event_keys k ON k.event_id = e.id), "
            "(SELECT count(*) FROM webhook_events WHERE tableoid::regclass::text "
            "LIKE 'webhook_events_until_%')")).one()
    ratio = busy["p99"] / quiet["p99"]
    errors = writer.errors + quiet["errors"] + busy["errors"]
    print("\n== bench/migrate ==")
    print(f"machine: {os.cpu_count()} cores; {ROWS:,} rows at 0027, filled in "
          f"{fill_seconds:.0f} s")
    print(f"flask db upgrade (0028: trigger, then {ROWS:,} keys copied): "
          f"{upgraded - started:.0f} s; the release before's inserts meanwhile: p99 "
          f"{p99(during):.1f} ms (before: {p99(before):.1f}), max {max(during or [0]):.0f} ms, "
          f"{len(during)} inserts, errors {writer.errors}")
    print(f"flask db partition-events: exit {command.returncode}, {command_seconds:.0f} s; "
          f"it said: {said.strip()[-300:]}")
    print(f"ingest (this release) before: {quiet['rps']:.0f} req/s, p99 {quiet['p99']:.1f} ms;"
          f" during the command ({len(busy_runs)} rounds, the worst): {busy['rps']:.0f} req/s, p99 "
          f"{busy['p99']:.1f} ms ({ratio:.2f}x), errors {quiet['errors'] + busy['errors']}")
    print(f"after: {events:,} events, {keyed:,} with their key, {first:,} in the first "
          "partition")
    print(f"RESULT migrate rows={ROWS} upgrade_seconds={upgraded - started:.0f} "
          f"old_writer_p99_ms={p99(during):.1f} old_writer_max_ms={max(during or [0]):.0f} "
          f"partition_seconds={command_seconds:.0f} "
          f"swap_ms={locked.group(1) if locked else 'none'} "
          f"p99_ratio_during_partition={ratio:.2f} unkeyed={events - keyed} errors={errors}")


if __name__ == "__main__":
    main()

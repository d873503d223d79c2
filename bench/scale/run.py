"""Scale benchmark (`make bench`): does ingest slow down as webhook_events fills, and
while retention removes a month of it?

1. Two PostgreSQL databases, migrated alike (webhook_events partitioned by month,
   migration 0028). One is filled, server-side, with SCALE_ROWS (default 20,000,000)
   finished events received over the last 65 days, oldest first, each with its key
   claimed in webhook_event_keys, a random 36-character key (as providers' ids are),
   bodies already dropped (as retention leaves them after 30 days), into the months
   they fall in (the past ones added first, as the owner); then VACUUM ANALYZE of
   both tables.
   The other stays empty.
2. Two web servers on the production gunicorn config, one per database, the worker
   not running; BENCH_ROUNDS alternating rounds of wrk at 64 connections for
   BENCH_SECONDS each, every delivery a new event (bench/ingest's requests). The
   ratios: req/s full / empty, p99 full / empty.
3. The drop: `flask cron run expire_webhook_events` against the full database, with
   DEDUP_WINDOW_DAYS 35, so every month that ended more than 35 days ago goes (its
   keys and links deleted in batches, then the month detached and dropped), while wrk
   runs against the full server for BENCH_SECONDS. The ratio: p99 during the drop
   / p99 on the full table without it. The drop's rows, seconds and rows/s.

Environment: as bench/ingest (BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_SECONDS,
BENCH_ROUNDS), and SCALE_ROWS.
"""
from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import ROUNDS, fresh_services, spread  # noqa: E402
from bench.ingest.run import SECONDS, presigned, serve, web_env, wrk  # noqa: E402
from store.db import utcnow  # noqa: E402
from tests.e2e.harness import REPO, Stack  # noqa: E402
from tests.services import free_port, fresh_postgres_database  # noqa: E402
from webhooks import partitions  # noqa: E402

ROWS = int(os.environ.get("SCALE_ROWS", "20000000"))
DAYS = 65
WINDOW_DAYS = 35
CHUNK = 1_000_000
# finished events over the last DAYS days, oldest first (bench/migrate fills with it too)
EVENTS = """
INSERT INTO webhook_events (source, event_key, kind, provider, event_type, trust,
                            received_at, enqueued_at, headers, body, status, attempts,
                            processed_at, subjects_linked)
SELECT 'stripe', 'evt_' || left(md5(g::text), 32), 'payment', 'stripe',
       'payment_intent.succeeded', 'signed', at, at, '{}', NULL, 'processed', 1,
       at + interval '1 second', true
FROM (SELECT g, now() - interval '65 days' + (g::float8 / :rows) * interval '65 days' AS at
      FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g) AS generated
"""
# and their keys, as ingest claims them
FILL = text(f"""
WITH events AS ({EVENTS} RETURNING source, event_key, id, received_at)
INSERT INTO webhook_event_keys (source, event_key, event_id, received_at)
SELECT source, event_key, id, received_at FROM events
""")


def fill(engine, statement=FILL, rows: int = ROWS) -> float:
    """`rows` rows in CHUNK-row transactions, oldest first; the seconds it took."""
    started = time.monotonic()
    for first in range(1, rows + 1, CHUNK):
        with engine.begin() as connection:
            connection.execute(statement, {"rows": rows, "first": first,
                                           "last": min(first + CHUNK - 1, rows)})
        print(f"  filled {min(first + CHUNK - 1, rows):,} rows "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # both tables, or autovacuum does it during the rounds (the 20 million fresh keys)
        for table in ("webhook_events", "webhook_event_keys"):
            if connection.scalar(text(f"SELECT to_regclass('{table}') IS NOT NULL")):
                connection.execute(text(f"VACUUM ANALYZE {table}"))
    return time.monotonic() - started


def add_past_months(engine) -> list[str]:
    """The months the last DAYS days fall in, before the ones the migration added."""
    with engine.begin() as connection:
        first = min(part.lower for part in partitions.months(connection) if part.lower)
        start = partitions.first_of_month(utcnow() - dt.timedelta(days=DAYS))
        added = []
        while start < first:
            added.append(partitions.add(connection, start, partitions.month_after(start)))
            start = partitions.month_after(start)
    return added


def month_names(engine) -> list[str]:
    with engine.connect() as connection:
        return [part.name for part in partitions.months(connection)]


def table_size(engine) -> str:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(relid))) "
            "FROM pg_partition_tree('webhook_events')")).scalar()


def keys_size(engine) -> str:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT pg_size_pretty(pg_total_relation_size('webhook_event_keys'))")).scalar()


def older_than_window(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM webhook_events "
            f"WHERE received_at < now() - interval '{WINDOW_DAYS} days'")).scalar()


def main() -> None:
    workdir, empty_url, redis_url = fresh_services("sluice-scale", redis_db=13)
    full_url = fresh_postgres_database(
        os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        "sluice_scale_full")
    env = {"empty": web_env(workdir, empty_url, redis_url),
           "full": web_env(workdir, full_url, redis_url)}
    env["full"].update(PORT=str(free_port()), DEDUP_WINDOW_DAYS=str(WINDOW_DAYS),
                       PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics-full"))
    for name in env:
        Stack(workdir, env[name]).release()
    engine = create_engine(full_url.replace("postgresql://", "postgresql+psycopg://", 1))
    print(f"adding the months {', '.join(add_past_months(engine))}; filling webhook_events "
          f"with {ROWS:,} rows", flush=True)
    fill_seconds = fill(engine)
    size, key_size = table_size(engine), keys_size(engine)
    months_before = month_names(engine)
    servers = {name: serve(workdir / f"web-{name}", env[name]) for name in env}
    per_run = max(20_000, 1500 * SECONDS)
    for name, server in servers.items():  # warm-ups, the caches of both alike
        wrk(server.port, presigned(workdir / f"warm-{name}.tsv", per_run, f"warm{name}"), 3)
    runs: dict[str, list[dict]] = {"empty": [], "full": []}
    for round_no in range(ROUNDS):
        for name, server in servers.items():
            runs[name].append(wrk(server.port, presigned(
                workdir / f"{name}-{round_no}.tsv", per_run, f"{name}{round_no}"), SECONDS))

    to_drop = older_than_window(engine)
    log = open(workdir / "purge.log", "wb")
    started = time.monotonic()
    purge = subprocess.Popen([sys.executable, "-m", "flask", "--app", "webapp", "cron", "run",
                              "expire_webhook_events"], cwd=REPO, env=env["full"], stdout=log,
                             stderr=subprocess.STDOUT)
    time.sleep(1)  # the job has started deleting
    during = wrk(servers["full"].port, presigned(workdir / "drop.tsv", per_run, "drop"), SECONDS)
    purge.wait(timeout=1500)
    drop_seconds = time.monotonic() - started
    dropped = to_drop - older_than_window(engine)
    months_after = month_names(engine)
    for server in servers.values():
        server.stop()

    full, empty = runs["full"], runs["empty"]
    ratio = [f["rps"] / e["rps"] for f, e in zip(full, empty)]
    p99_ratio = [f["p99"] / e["p99"] for f, e in zip(full, empty)]
    drop_p99_ratio = during["p99"] / statistics.median(f["p99"] for f in full)
    print("\n== bench/scale ==")
    print(f"machine: {os.cpu_count()} cores; {ROWS:,} rows filled in {fill_seconds:.0f} s "
          f"({ROWS / fill_seconds:,.0f} rows/s), webhook_events then {size} with its indexes, "
          f"webhook_event_keys {key_size}; "
          f"{ROUNDS} alternating rounds of {SECONDS}s")
    for name in ("empty", "full"):
        print(f"ingest, {name:<5} table: {spread([r['rps'] for r in runs[name]])} req/s, p99 "
              f"{spread([r['p99'] for r in runs[name]], '{:.1f}')} ms, errors "
              f"{sum(r['errors'] for r in runs[name])}")
    print(f"full / empty: {spread(ratio, '{:.2f}')} req/s, p99 {spread(p99_ratio, '{:.2f}')}x "
          "(targets >= 0.9 and <= 1.2x)")
    print(f"during the drop: {during['rps']:.0f} req/s, p99 {during['p99']:.1f} ms, "
          f"{drop_p99_ratio:.2f}x the full table's p99 (target <= 1.5x), errors "
          f"{during['errors']}")
    gone = sorted(set(months_before) - set(months_after))
    print(f"the drop (expire_webhook_events: the months {gone}, their keys in batches of "
          "10,000, then each month detached and dropped): "
          f"{dropped:,} of the {to_drop:,} rows past the window in {drop_seconds:.0f} s, "
          f"{dropped / drop_seconds:,.0f} rows/s, exit {purge.returncode} "
          f"(log: {workdir / 'purge.log'}); the rest are in a month not yet wholly past it")
    print(f"RESULT scale ratio_full_to_empty={statistics.median(ratio):.2f} "
          f"p99_ratio_full_to_empty={statistics.median(p99_ratio):.2f} "
          f"p99_ratio_during_drop={drop_p99_ratio:.2f} rows={ROWS} "
          f"drop_rows={dropped} drop_seconds={drop_seconds:.0f} "
          f"drop_rows_per_second={dropped / drop_seconds:.0f} "
          f"errors={sum(r['errors'] for r in full + empty) + during['errors']}")


if __name__ == "__main__":
    main()

"""Webhook ingest and drain benchmark (`make bench`).

1. Ingest: gunicorn with the production config (gunicorn.conf.py), PostgreSQL and
   Redis; wrk posts signed ~1.5 KB Stripe-style deliveries, each a new event, at
   64 connections. The baseline is a bare Flask endpoint on the same gunicorn
   config. Both servers stay up and the runs alternate, baseline then ingest, for
   BENCH_ROUNDS rounds, so a slow spell of this shared machine hits both sides of
   a ratio. The worker is not running meanwhile, so the web process has the
   machine's cores to itself, as the baseline does.
   Each round also runs three ceilings (bench/ingest/minimal.py): bare Flask
   endpoints on the same config that do only what the issue requires of every
   delivery, the rate limit on Redis, the committed INSERT, and both.
   A third web server runs the same app with OpenTelemetry on, exporting over OTLP
   to a collector stub in this process, in the same rounds; a fourth the same app with
   sealing off (bench/ingest/unsealed.py), for the cost of sealing the body at rest.
   The web publishes nothing: each worker's relay does (tasks/relay.py).
2. Drain, BENCH_ROUNDS times: 10,000 accepted events, then the worker starts;
   events/s from the first to the last processed_at, and the worker's CPU per event.
   Alternated with its ceiling: the same worker (app, transport, pool, acks_late,
   prefetch) on 10,000 `sluice.ping` tasks, which only set a Redis key. The drain
   includes the worker's relay publishing the 10,000 outbox rows.
3. Latency: web and worker running, a steady trickle of deliveries; from each
   event's commit to its handler's commit.
4. The capacity model (bench/capacity.py, docs/capacity.md): the CPU each role spent
   per delivery (bench/cpu.py), the web and PostgreSQL and Redis over the ingest
   rounds, the worker and PostgreSQL and Redis over the drains, and PostgreSQL's WAL;
   from those, the hosts 100, 1,000 and 10,000 deliveries/s need.

Environment: BENCH_DATABASE_URL (a PostgreSQL database it may create databases
next to, default postgresql://postgres@127.0.0.1:5432/test), BENCH_REDIS_URL
(default redis://127.0.0.1:6379/12), BENCH_SECONDS (default 15), BENCH_ROUNDS
(default 3).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import ROUNDS, capacity, fresh_services, spread  # noqa: E402
from bench.cpu import Meter, per_unit, process_cpu  # noqa: E402
from store.sealing import KeyRing  # noqa: E402
from tests.e2e.harness import Stack, clean_environment  # noqa: E402
from tests.e2e.webhook_load import deliver, payment_event  # noqa: E402
from tests.fakes.otlp import CollectorStub  # noqa: E402
from tests.services import DATA_KEYS, INDEX_KEY, free_port, wait_for  # noqa: E402
from tests.webhooks import signing  # noqa: E402

HERE = Path(__file__).resolve().parent
SECRET = "whsec_bench_secret"
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
CONNECTIONS = 64
DRAIN_EVENTS = 10_000
PAD = 1100  # brings a delivery to about 1.5 KB
# bench/ingest/minimal.py: what every delivery requires, and nothing else; each
# is a ceiling for the ingest endpoint, which does all of it and more
MINIMAL_APPS = {"rate_limited": "rate limit (flask-limiter on Redis) only",
                "committed": "committed INSERT only",
                "limited_and_committed": "rate limit + committed INSERT",
                "limited_committed_published": "rate limit + committed INSERT + publish"}
MINIMAL_TABLE = """
CREATE TABLE IF NOT EXISTS minimal_events (
    event_key text PRIMARY KEY,
    body bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)"""
SOURCES = """
[sources.stripe]
scheme = "stripe"
secrets_env = ["BENCH_STRIPE_SECRET"]
rate_limit = "100000000/minute"
"""


def presigned(path: Path, count: int, prefix: str) -> Path:
    """`count` signed deliveries of new events; signed now, so within the tolerance."""
    with path.open("w") as out:
        for i in range(count):
            body = payment_event(f"evt_{prefix}_{i}", f"pi_{prefix}_{i}", pad=PAD)
            signature = signing.stripe_headers(body, SECRET)["Stripe-Signature"]
            out.write(f"{signature}\t{body.decode()}\n")
    return path


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


def minimal_run(engine, port: int, requests_file: Path, seconds: int) -> dict:
    """wrk against a bench/ingest/minimal.py app, every delivery a new row again."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE minimal_events"))
    return wrk(port, requests_file, seconds)


def web_env(workdir: Path, database_url: str, redis_url: str) -> dict:
    (workdir / "sources.toml").write_text(SOURCES)
    return clean_environment(
        DATABASE_URL=database_url, REDIS_URL=redis_url, SECRET_KEY="bench",
        DATA_KEYS=DATA_KEYS, INDEX_KEY=INDEX_KEY,
        SLUICE_INSTANCE_PATH=str(workdir / "instance"),
        SLUICE_SOURCES_FILE=str(workdir / "sources.toml"),
        BENCH_STRIPE_SECRET=SECRET, PORT=str(free_port()), LOG_LEVEL="WARNING",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"))


def serve(workdir: Path, env: dict, *argv: str) -> Stack:
    stack = Stack(workdir, env, printed_log_lines=0)
    stack.start("web", command=list(argv) if argv else None)
    wait_for(lambda: _answers(stack), timeout=60, what="gunicorn")
    return stack


def _answers(stack: Stack) -> bool:
    """gunicorn is up once it answers at all (these empty posts are refused)."""
    stack.assert_running()
    try:
        requests.post(stack.url("/webhooks/stripe"), data=b"{}", timeout=2)
    except requests.RequestException:
        return False
    return True


def count(engine, sql: str) -> int:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar()


def drain_ceiling(workdir: Path, env: dict, redis_url: str, round_no: int) -> tuple[float, float]:
    """The worker itself (same Celery app, transport, prefork pool, acks_late,
    prefetch) consuming DRAIN_EVENTS `sluice.ping` tasks from the webhooks queue: a
    task that only sets one Redis key. (events/s, worker CPU ms per task)."""
    from bench.soak.run import publisher

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    send, tokens = publisher(redis_url, "sluice.ping", "webhooks")
    send(DRAIN_EVENTS)
    worker = Stack(workdir / f"ceiling-worker-{round_no}", env, printed_log_lines=0)
    worker.start("worker")
    wait_for(lambda: client.llen("webhooks") == 0 and
             client.exists(f"sluice:ping:{tokens['last']}"), timeout=600, interval=0.2,
             what="the ping drain")
    time.sleep(1)  # the last few still running
    cpu = process_cpu(worker.processes["worker"].pid)
    worker.stop()
    marks = [json.loads(value)["at"] for value in
             client.mget(client.keys("sluice:ping:*"))]
    return (len(marks) - 1) / (max(marks) - min(marks)), 1000 * cpu / DRAIN_EVENTS


def drain(workdir: Path, env: dict, engine, redis_url: str,
          round_no: int) -> tuple[float, float, dict[str, float]]:
    """Events/s for the worker to process a fresh 10,000 accepted events, the
    worker's CPU ms per event, and PostgreSQL's and Redis's per event (bench/cpu.py)."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE webhook_events, payments, outbox"))
    redis.Redis.from_url(redis_url).flushdb()
    web = serve(workdir / f"drain-web-{round_no}", env)
    bodies = [payment_event(f"evt_drain_{round_no}_{i}", f"pi_drain_{i}", pad=PAD,
                            email=f"customer{i}@example.com")
              for i in range(DRAIN_EVENTS)]
    statuses = deliver(web.url("/webhooks/stripe"), bodies, SECRET, connections=32)
    web.stop()
    assert statuses == {202: DRAIN_EVENTS}, statuses
    worker = Stack(workdir / f"worker-{round_no}", env, printed_log_lines=0)
    meter = Meter(engine, redis_url, {}).start()  # PostgreSQL and Redis, for the model
    worker.start("worker")
    wait_for(lambda: count(engine, "SELECT count(*) FROM webhook_events "
                                   "WHERE status = 'processed'") == DRAIN_EVENTS,
             timeout=600, interval=0.5, what="the drain")
    cpu = process_cpu(worker.processes["worker"].pid)
    spent = meter.stop()
    worker.stop()
    span = count(engine, "SELECT extract(epoch FROM max(processed_at) - min(processed_at)) "
                         "FROM webhook_events")
    return (DRAIN_EVENTS - 1) / float(span), 1000 * cpu / DRAIN_EVENTS, \
        per_unit(spent, DRAIN_EVENTS)


LATENCY_EVENTS = 500
LATENCY_RATE = 50  # deliveries/s: a steady trickle, far below capacity


def end_to_end_latency(workdir: Path, env: dict, engine, redis_url: str) -> tuple[float, float]:
    """Web and worker both running, LATENCY_EVENTS deliveries at LATENCY_RATE/s: the
    p50 and p99 ms from an event's commit (received_at) to its handler's commit
    (processed_at), the worker's relay publishing in between."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE webhook_events, payments, outbox"))
    redis.Redis.from_url(redis_url).flushdb()
    stack = Stack(workdir / "latency", env, printed_log_lines=0)
    stack.start("web", "worker")
    wait_for(lambda: _answers(stack), timeout=60, what="gunicorn")
    session = requests.Session()
    try:
        def send(event_key: str) -> None:
            body = payment_event(event_key, f"pi_{event_key}", pad=PAD)
            assert session.post(stack.url("/webhooks/stripe"), data=body, timeout=10,
                                headers=signing.stripe_headers(body, SECRET)).status_code == 202
        send("evt_latency_warm")  # the worker up and consuming before the clock starts
        wait_for(lambda: count(engine, "SELECT count(*) FROM webhook_events WHERE status = "
                                       "'processed'") == 1, timeout=60, what="the worker")
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE webhook_events, payments"))
        for i in range(LATENCY_EVENTS):
            send(f"evt_latency_{i}")
            time.sleep(1 / LATENCY_RATE)
        wait_for(lambda: count(engine, "SELECT count(*) FROM webhook_events WHERE status = "
                                       "'processed'") == LATENCY_EVENTS,
                 timeout=120, interval=0.2, what="the latency run's events processed")
    finally:
        stack.stop()
    with engine.connect() as connection:
        p50, p99 = connection.execute(text(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) FROM (SELECT 1000 * "
            "extract(epoch FROM processed_at - received_at) AS lag FROM webhook_events) l")).one()
    return float(p50), float(p99)


def sealing_cost(body: bytes, count: int = 20000) -> tuple[float, float]:
    """CPU microseconds to seal, and to open, one delivery's body under DATA_KEYS: the
    cost that encryption_ratio measures through the whole server, alone."""
    ring = KeyRing.parse(DATA_KEYS)
    started = time.process_time()
    for _ in range(count):
        sealed = ring.seal(body)
    middle = time.process_time()
    for _ in range(count):
        ring.open(sealed)
    return ((middle - started) / count * 1e6, (time.process_time() - middle) / count * 1e6)


def median_of(costs: list[dict[str, float]], key: str) -> float:
    return statistics.median(cost[key] for cost in costs)


def main() -> None:
    workdir, database_url, redis_url = fresh_services("sluice-bench", redis_db=12)
    env = web_env(workdir, database_url, redis_url)
    Stack(workdir, env).release()
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    size = len(payment_event("evt_bench_0", "pi_bench_0", pad=PAD))
    seal_us, open_us = sealing_cost(payment_event("evt_bench_0", "pi_bench_0", pad=PAD))
    # Enough distinct events for a run at several times today's rate.
    per_run = max(20_000, 1500 * SECONDS)

    baseline = serve(workdir / "baseline", {**env, "PORT": str(free_port())}, "gunicorn",
                     "-c", "gunicorn.conf.py", "bench.ingest.baseline:app")
    web = serve(workdir / "web", env)
    collector = CollectorStub()
    traced = serve(workdir / "web-otel", {
        **env, "PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(workdir / "m-otel"),
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_SERVICE_NAME": "bench"})
    clear = serve(workdir / "web-clear", {
        **env, "PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(workdir / "m-clear")},
        "gunicorn", "-c", "gunicorn.conf.py", "bench.ingest.unsealed:app")
    minimal_apps = {name: serve(workdir / name, {**env, "PORT": str(free_port())},
                                "gunicorn", "-c", "gunicorn.conf.py",
                                f"bench.ingest.minimal:{name}")
                    for name in MINIMAL_APPS}
    ports = {web.port, traced.port, clear.port, baseline.port,
             *(server.port for server in minimal_apps.values())}
    assert len(ports) == 4 + len(MINIMAL_APPS)
    with engine.begin() as connection:
        connection.execute(text(MINIMAL_TABLE))
    # The committed ceilings take their deliveries from this file too: enough for a
    # run at the bare baseline's rate, so that none of them replays a delivery (a
    # duplicate writes nothing, and would flatter the ceiling).
    base_file = presigned(workdir / "baseline.tsv", max(per_run, 6000 * SECONDS), "baseline")
    wrk(baseline.port, base_file, 3)  # warm-ups
    for name, server in minimal_apps.items():
        warm_up = minimal_run(engine, server.port, base_file, 3)
        assert warm_up["errors"] == 0, f"{name} answered errors: see {server.workdir}"
    warm = wrk(web.port, presigned(workdir / "warm.tsv", per_run, "warm"), 3)
    wrk(traced.port, presigned(workdir / "warm-otel.tsv", per_run, "warmotel"), 3)
    wrk(clear.port, presigned(workdir / "warm-clear.tsv", per_run, "warmclear"), 3)
    rounds, minimal_rounds, traced_rounds, clear_rounds = [], [], [], []
    ingest_costs: list[dict[str, float]] = []  # CPU ms and WAL bytes per delivery, by role
    for round_no in range(ROUNDS):
        base = wrk(baseline.port, base_file, SECONDS)
        meter = Meter(engine, redis_url, {"web": web.processes["web"].pid}).start()
        ingest = wrk(web.port, presigned(workdir / f"ingest-{round_no}.tsv", per_run,
                                         f"run{round_no}"), SECONDS)
        ingest_costs.append(per_unit(meter.stop(), ingest["requests"]))
        rounds.append((base, ingest))
        traced_rounds.append(wrk(traced.port, presigned(
            workdir / f"otel-{round_no}.tsv", per_run, f"otel{round_no}"), SECONDS))
        clear_rounds.append(wrk(clear.port, presigned(
            workdir / f"clear-{round_no}.tsv", per_run, f"clear{round_no}"), SECONDS))
        minimal_rounds.append({name: minimal_run(engine, server.port, base_file, SECONDS)
                               for name, server in minimal_apps.items()})
    for server in (baseline, web, traced, clear, *minimal_apps.values()):
        server.stop()
    spans = len(collector.snapshot())
    collector.stop()
    stored = count(engine, "SELECT count(*) FROM webhook_events")
    drains, ceilings = [], []
    for round_no in range(ROUNDS):  # alternated: the drain, then the worker on no-ops
        drains.append(drain(workdir, env, engine, redis_url, round_no))
        ceilings.append(drain_ceiling(workdir, env, redis_url, round_no))

    latency = end_to_end_latency(workdir, env, engine, redis_url)

    print("\n== bench/ingest ==")
    print(f"machine: {os.cpu_count()} cores; gunicorn.conf.py; {CONNECTIONS} connections; "
          f"{ROUNDS} alternating rounds of {SECONDS}s; delivery {size} bytes")
    for round_no, (base, ingest) in enumerate(rounds, 1):
        print(f"round {round_no}: baseline {base['rps']:6.0f} req/s p99 {base['p99']:6.1f} ms | "
              f"ingest {ingest['rps']:5.0f} req/s p50 {ingest['p50']:6.1f} ms "
              f"p99 {ingest['p99']:6.1f} ms errors {ingest['errors']} "
              f"(socket: {ingest['socket_errors']}) | ratio {ingest['rps'] / base['rps']:.2f}")
    ratios = [ingest["rps"] / base["rps"] for base, ingest in rounds]
    print(f"baseline (bare Flask)  {spread([b['rps'] for b, _ in rounds])} req/s, "
          f"p99 {spread([b['p99'] for b, _ in rounds], '{:.1f}')} ms")
    print(f"ingest (verify+store)  {spread([i['rps'] for _, i in rounds])} req/s, "
          f"p50 {spread([i['p50'] for _, i in rounds], '{:.1f}')} ms, "
          f"p99 {spread([i['p99'] for _, i in rounds], '{:.1f}')} ms, "
          f"errors {sum(i['errors'] for _, i in rounds)}")
    print(f"ratio ingest/baseline  {spread(ratios, '{:.2f}')}   (target >= 0.5, "
          f"p99 <= 50 ms, 0 errors)")
    for name, what in MINIMAL_APPS.items():
        runs = [minimal_round[name] for minimal_round in minimal_rounds]
        print(f"ceiling, {what:<40}: {spread([r['rps'] for r in runs])} req/s, p99 "
              f"{spread([r['p99'] for r in runs], '{:.1f}')} ms, errors "
              f"{sum(r['errors'] for r in runs)}, ratio "
              f"{spread([r['rps'] / b['rps'] for r, (b, _) in zip(runs, rounds)], '{:.2f}')}")
    sent = warm["requests"] + sum(ingest["requests"] for _, ingest in rounds) + \
        sum(t["requests"] for t in traced_rounds) + sum(c["requests"] for c in clear_rounds)
    print(f"events stored: {stored} of {sent} deliveries (each a new event; wrk counts "
          "only completed requests)")
    ceiling = [minimal_round["limited_and_committed"] for minimal_round in minimal_rounds]
    published = [minimal_round["limited_committed_published"] for minimal_round in minimal_rounds]
    to_ceiling = [i["rps"] / c["rps"] for (_, i), c in zip(rounds, ceiling)]
    to_published = [i["rps"] / c["rps"] for (_, i), c in zip(rounds, published)]
    p99_ratio = [i["p99"] / c["p99"] for (_, i), c in zip(rounds, ceiling)]
    otel_ratio = [t["rps"] / i["rps"] for t, (_, i) in zip(traced_rounds, rounds)]
    sealing_ratio = [i["rps"] / c["rps"] for (_, i), c in zip(rounds, clear_rounds)]
    print(f"ingest / ceiling (rate limit + committed INSERT): {spread(to_ceiling, '{:.2f}')}, "
          f"p99 {spread(p99_ratio, '{:.2f}')}x (targets >= 0.6 and <= 1.5x)")
    print(f"ingest / ceiling with its publish too:            {spread(to_published, '{:.2f}')}")
    print(f"ingest with OpenTelemetry on (OTLP to a local collector stub): "
          f"{spread([t['rps'] for t in traced_rounds])} req/s, p99 "
          f"{spread([t['p99'] for t in traced_rounds], '{:.1f}')} ms, "
          f"{spread(otel_ratio, '{:.2f}')} of ingest with it off; {spans} spans received")
    print(f"ingest with sealing off (the body stored in clear): "
          f"{spread([c['rps'] for c in clear_rounds])} req/s, p99 "
          f"{spread([c['p99'] for c in clear_rounds], '{:.1f}')} ms; ingest sealed / in clear "
          f"{spread(sealing_ratio, '{:.2f}')} (target >= 0.9); alone, sealing a body costs "
          f"{seal_us:.1f} us of CPU and opening it {open_us:.1f} us")
    rates, cpu = [d for d, _, _ in drains], [c for _, c, _ in drains]
    ceiling_rates, ceiling_cpu = [d for d, _ in ceilings], [c for _, c in ceilings]
    drain_ratio = [d / c for d, c in zip(rates, ceiling_rates)]
    print(f"drain of {DRAIN_EVENTS} accepted events: {spread(rates)} events/s over "
          f"{ROUNDS} runs: {', '.join(f'{d:.0f}' for d in rates)}; worker CPU "
          f"{spread(cpu, '{:.2f}')} ms per event")
    print(f"ceiling, the same worker on no-op tasks: {spread(ceiling_rates)} tasks/s, "
          f"{spread(ceiling_cpu, '{:.2f}')} ms CPU per task; drain ratio "
          f"{spread(drain_ratio, '{:.2f}')} (target >= 0.5)")
    print(f"commit to processed, web and worker running, {LATENCY_EVENTS} deliveries at "
          f"{LATENCY_RATE}/s (the worker's relay polls every OUTBOX_POLL_INTERVAL): p50 "
          f"{latency[0]:.0f} ms, p99 {latency[1]:.0f} ms")
    # The model: a delivery costs the web its ingest, the worker its drain (the relay
    # included), PostgreSQL and Redis both; each the median over the rounds.
    drain_costs = [costs for _, _, costs in drains]
    per_delivery = {"web": median_of(ingest_costs, "web"), "worker": statistics.median(cpu),
                    **{role: median_of(ingest_costs, role) + median_of(drain_costs, role)
                       for role in ("postgres", "redis")}}
    wal = median_of(ingest_costs, "wal_bytes") + median_of(drain_costs, "wal_bytes")
    print(f"per delivery, ingest: web {median_of(ingest_costs, 'web'):.2f} ms CPU, "
          f"PostgreSQL {median_of(ingest_costs, 'postgres'):.2f} ms, Redis "
          f"{median_of(ingest_costs, 'redis'):.3f} ms, WAL "
          f"{median_of(ingest_costs, 'wal_bytes'):.0f} B; drain: worker "
          f"{statistics.median(cpu):.2f} ms, PostgreSQL {median_of(drain_costs, 'postgres'):.2f} "
          f"ms, Redis {median_of(drain_costs, 'redis'):.3f} ms, WAL "
          f"{median_of(drain_costs, 'wal_bytes'):.0f} B")
    for line in capacity.model(per_delivery, wal):
        print(line)
    limits = capacity.ceilings(per_delivery)
    print(f"RESULT ingest ratio_to_baseline={statistics.median(ratios):.2f} "
          f"ratio_to_ceiling={statistics.median(to_ceiling):.2f} "
          f"ratio_to_published_ceiling={statistics.median(to_published):.2f} "
          f"p99_ratio={statistics.median(p99_ratio):.2f} "
          f"errors={sum(i['errors'] for _, i in rounds)} "
          f"otel_ratio={statistics.median(otel_ratio):.2f} "
          f"encryption_ratio={statistics.median(sealing_ratio):.2f} "
          f"seal_us_per_body={seal_us:.1f} open_us_per_body={open_us:.1f} "
          f"drain_events_per_second={statistics.median(rates):.0f} "
          f"drain_ratio={statistics.median(drain_ratio):.2f} "
          f"drain_cpu_ms_per_event={statistics.median(cpu):.2f} "
          f"latency_p50_ms={latency[0]:.0f} latency_p99_ms={latency[1]:.0f} "
          + " ".join(f"{role}_cpu_ms_per_delivery={value:.3f}"
                     for role, value in per_delivery.items())
          + f" wal_bytes_per_delivery={wal:.0f} "
          f"postgres_ceiling_per_second={limits['postgres']:.0f} "
          f"redis_ceiling_per_second={limits['redis']:.0f}")


if __name__ == "__main__":
    main()

"""Deliveries benchmark (`make bench`): events pushed to the team's endpoints.

1. Throughput, alternated with its ceiling for BENCH_ROUNDS rounds. BENCH_DELIVERY_EVENTS
   (default 2,000) payment.updated events are written to the event log, one
   destination wants them, and the `deliver` process (Procfile: Celery, threads, 16)
   starts: its relay thread's dispatcher fans the log out and queues the deliveries
   through the outbox, its threads sign and POST them to a local receiver that
   answers 200 at once (and verifies each with the standardwebhooks library).
   Delivered events/s from the receiver's first receipt to its last. The ceiling is
   the same worker pool (threads, 16, same broker) POSTing the same number of
   pre-signed bodies to the same receiver with no database (bench/deliveries/ceiling.py).
   Target: at least 0.5x the ceiling.
2. Isolation: four destinations, each wanting every event; one answers after 10 s.
   The other three's delivered events/s against the same three without the slow one,
   alternated. Target: at least 0.8.

Environment: BENCH_DATABASE_URL, BENCH_REDIS_URL (default redis://127.0.0.1:6379/13),
BENCH_ROUNDS (default 3), BENCH_DELIVERY_EVENTS (default 2000).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import ROUNDS, fresh_services, spread  # noqa: E402
from deliveries import destinations as ops  # noqa: E402
from deliveries.sending import body_of, headers_for  # noqa: E402
from store import events  # noqa: E402
from tests.e2e.harness import REPO, Stack, clean_environment  # noqa: E402
from tests.fakes.receiver import Receiver  # noqa: E402
from tests.services import (  # noqa: E402
    DATA_KEYS,
    INDEX_KEY,
    wait_for,  # noqa: E402
)
from webapp import create_app  # noqa: E402
from webapp.extensions import db  # noqa: E402

EVENTS = int(os.environ.get("BENCH_DELIVERY_EVENTS", "2000"))
CONCURRENCY = 16  # the Procfile's `deliver -c`
SLOW_SECONDS = 10.0
TABLES = ("delivery_attempts", "deliveries", "destinations", "delivery_fanout", "events",
          "outbox")


def payment(n: int) -> dict:
    return {"provider": "stripe", "reference": f"pi_bench_{n}", "status": "succeeded",
            "previous_status": "processing", "amount": 4200 + n, "currency": "eur",
            "source": "webhook", "version": 2}


def reset(app) -> None:
    with app.app_context():
        db.session.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        db.session.commit()


def write_events(app, count: int) -> None:
    with app.app_context():
        for n in range(count):
            events.record(db.session, events.PAYMENT_UPDATED, payment(n))
        db.session.commit()


def subscribe(app, receiver: Receiver) -> str:
    with app.app_context():
        _, secret = ops.create(db.session, "bench", name="bench", url=receiver.url,
                               event_types=["payment.*"], allowed_networks=["127.0.0.0/8"],
                               allow_http=True)
        db.session.commit()
    receiver.secrets.append(secret)
    return secret


def rate(receivers: list[Receiver], per_receiver: int) -> float:
    """Delivered events/s over the receivers, first receipt to last."""
    times = sorted(r.at for receiver in receivers for r in receiver.received[:per_receiver])
    return (len(times) - 1) / (times[-1] - times[0])


def run_deliver(workdir: Path, env: dict, receivers: list[Receiver]) -> float:
    stack = Stack(workdir, env, printed_log_lines=0)
    stack.start("deliver")
    try:
        wait_for(lambda: stack.assert_running() or all(
            len(r.received) >= EVENTS for r in receivers), timeout=600, interval=0.2,
            what="every delivery")
        assert all(r.verified() and all(x.verified for x in r.received[:EVENTS])
                   for r in receivers), "a delivery failed verification"
        return rate(receivers, EVENTS)
    finally:
        stack.stop()


def run_ceiling(workdir: Path, env: dict, app, receiver: Receiver, secret: str) -> float:
    """The same pool POSTing pre-signed bodies of the same events: no database."""
    bodies = workdir / "bodies.json"
    now = dt.datetime.now(dt.timezone.utc)
    with app.app_context():
        found = db.session.scalars(select(events.Event).order_by(events.Event.id)).all()
        destination = ops.find(db.session)[0]
        signed = [[receiver.url, headers_for(destination, event.public_id,
                                             body_of(event.envelope()), now),
                   body_of(event.envelope()).decode()] for event in found]
    bodies.write_text(json.dumps(signed))
    broker = env["REDIS_URL"]
    ceiling_env = {**env, "CEILING_BROKER_URL": broker, "CEILING_BODIES": str(bodies)}
    from celery import Celery
    sender = Celery("ceiling-sender", broker=broker)
    for index in range(len(signed)):
        sender.send_task("bench.ceiling.post", args=[index], queue="ceiling")
    stack = Stack(workdir, ceiling_env, printed_log_lines=0)
    stack.start("ceiling", command=[sys.executable, "-m", "celery", "-A",
                                    "bench.deliveries.ceiling", "worker", "-Q", "ceiling",
                                    "-P", "threads", "-c", str(CONCURRENCY), "--loglevel",
                                    "WARNING"])
    try:
        wait_for(lambda: stack.assert_running() or len(receiver.received) >= EVENTS,
                 timeout=600, interval=0.2, what="every ceiling POST")
        assert all(x.verified for x in receiver.received[:EVENTS])
        return rate([receiver], EVENTS)
    finally:
        stack.stop()


def main() -> None:
    workdir, database_url, redis_url = fresh_services("bench-deliveries", 13)
    env = clean_environment(DATABASE_URL=database_url, REDIS_URL=redis_url,
                            SECRET_KEY="bench", DATA_KEYS=DATA_KEYS, INDEX_KEY=INDEX_KEY,
                            SLUICE_INSTANCE_PATH=str(workdir / "instance"),
                            LOG_LEVEL="WARNING", DELIVERY_POLL_INTERVAL="0.2", PORT="0",
                            PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"))
    (workdir / "metrics").mkdir()
    subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", "db", "upgrade"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    app = create_app({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                      "SECRET_KEY": "bench", "DATA_KEYS": DATA_KEYS,
                      "INDEX_KEY": INDEX_KEY})
    ratios, ceilings, rates, slow_ratios, with_slow, without_slow = [], [], [], [], [], []
    for round_no in range(1, ROUNDS + 1):
        # throughput and its ceiling
        reset(app)
        receiver = Receiver()
        secret = subscribe(app, receiver)
        write_events(app, EVENTS)
        delivered = run_deliver(workdir, env, [receiver])
        receiver.received.clear()
        ceiling = run_ceiling(workdir, env, app, receiver, secret)
        receiver.stop()
        rates.append(delivered)
        ceilings.append(ceiling)
        ratios.append(delivered / ceiling)
        print(f"round {round_no}: delivered {delivered:.0f} events/s, ceiling "
              f"{ceiling:.0f}/s, ratio {delivered / ceiling:.2f}", flush=True)
        # isolation: three fast destinations, without and with a slow fourth
        measured = {}
        for slow in (False, True):
            reset(app)
            fast = [Receiver() for _ in range(3)]
            for receiver in fast:
                subscribe(app, receiver)
            lagging = Receiver(delay=SLOW_SECONDS) if slow else None
            if lagging:
                subscribe(app, lagging)
            write_events(app, EVENTS)
            measured[slow] = run_deliver(workdir, env, fast)
            for receiver in fast + ([lagging] if lagging else []):
                receiver.stop()
        without_slow.append(measured[False])
        with_slow.append(measured[True])
        slow_ratios.append(measured[True] / measured[False])
        print(f"round {round_no}: three destinations {measured[False]:.0f} events/s, "
              f"with a fourth answering after {SLOW_SECONDS:.0f} s {measured[True]:.0f}/s, "
              f"ratio {measured[True] / measured[False]:.2f}", flush=True)
    app.extensions["sluice.db"].engine.dispose()
    print(f"delivered events/s: {spread(rates)}; ceiling {spread(ceilings)}; "
          f"ratio {spread(ratios, '{:.2f}')}")
    print(f"three destinations: {spread(without_slow)} events/s alone, "
          f"{spread(with_slow)} beside a slow one; ratio {spread(slow_ratios, '{:.2f}')}")
    print(f"RESULT deliveries ratio_to_ceiling={statistics.median(ratios):.2f} "
          f"slow_destination_ratio={statistics.median(slow_ratios):.2f} "
          f"delivered_per_s={statistics.median(rates):.0f} "
          f"ceiling_per_s={statistics.median(ceilings):.0f}")


if __name__ == "__main__":
    main()

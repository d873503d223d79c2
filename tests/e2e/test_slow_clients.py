"""Slow and hostile clients against the production setup docs/deployment.md describes: the
nginx front (deploy/nginx/sluice.conf.template), the `web` and `hooks` gunicorns,
the worker, PostgreSQL and Redis. And the same attack against bare gunicorn, to
show why the front is there.

At once: 200 slowloris connections (headers one line every 5 s, never finished),
20 uploads of 30 MB at 1 MB/s from 20 addresses, and a steady signed-webhook load.
"""
from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import STRIPE_SECRET, bearer, fresh_stack_environment, running_stack
from tests.e2e.faults import SteadySender, report, tally
from tests.e2e.slow_clients import Probe, Slowloris, SlowUpload, percentile
from tests.services import Front, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
SLOWLORIS = 200
UPLOADS, UPLOAD_BYTES, UPLOAD_RATE = 20, 30 * 2**20, 2**20
QUIET_SECONDS = 15
UPLOAD_GIVE_UP = 50  # seconds; a 30 MB upload at 1 MB/s needs about 30


@pytest.fixture
def front_stack(tmp_path, worker_index):
    env = fresh_stack_environment(tmp_path, worker_index, "slow_clients")
    env.update(HOOKS_PORT=str(free_port()), TRUSTED_PROXY_COUNT="1",
               WORKER_CONCURRENCY="2", STORAGE_DIR=str(tmp_path / "storage"))
    with running_stack(tmp_path, env, "web", "hooks", "worker") as (stack, app):
        front = Front(web=f"127.0.0.1:{env['PORT']}",
                      hooks=f"127.0.0.1:{env['HOOKS_PORT']}").start()
        try:
            yield stack, front, app
        finally:
            print(f"----- nginx -----\n{front.log()[-3000:]}")
            front.stop()


def phase(base_url: str, port: int, app, prefix: str, token: str | None = None) -> dict:
    """A steady webhook load and a /livez probe, quiet for QUIET_SECONDS or, with a
    token, for as long as the attack's uploads take; the figures of that window."""
    sender = SteadySender(f"{base_url}/webhooks/stripe", STRIPE_SECRET, prefix).start()
    probe = Probe(f"{base_url}/livez").start()
    time.sleep(2)
    began = time.monotonic()
    uploads, loris = [], None
    if token is None:
        time.sleep(QUIET_SECONDS)
    else:
        loris = Slowloris(port, SLOWLORIS).start()
        uploads = [SlowUpload(port, f"127.0.1.{i + 1}", token, UPLOAD_BYTES, UPLOAD_RATE,
                              f"{prefix}-upload-{i}", give_up_after=UPLOAD_GIVE_UP)
                   for i in range(UPLOADS)]
        for upload in uploads:  # people arrive over a few seconds, not at one instant
            upload.start()
            time.sleep(0.2)
        for upload in uploads:
            upload.join(timeout=UPLOAD_GIVE_UP + 30)
    ended = time.monotonic()
    if loris is not None:
        loris.stop()
    probe.stop()
    sender.stop(timeout=120)
    figures = wait_for(lambda: (lambda t: t if t["processed"] == t["acknowledged"] else None)(
        tally(app, prefix, sender.sent, sender.acknowledged)), timeout=120, interval=0.5,
        what="every acknowledged event to be applied")
    latencies = [a.answered_at - a.sent_at for a in sender.attempts
                 if began <= a.sent_at <= ended]
    return {
        **figures,
        "webhook_p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "webhook_p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "webhook_errors": sum(a.status != 202 for a in sender.attempts
                              if began <= a.sent_at <= ended),
        "livez_probes": len(probe.latencies),
        "livez_over_1s": sum(latency > 1 for latency in probe.latencies),
        "livez_max_ms": round(1000 * max(probe.latencies), 1),
        "livez_failures": probe.failures,
        "uploads_201": sum(u.status == 201 for u in uploads),
        "slowloris_closed_by_server": loris.closed_by_server if loris else 0,
        "seconds": round(ended - began, 1),
    }


def test_slow_clients_behind_the_front_cannot_starve_webhooks(front_stack, record_property):
    stack, front, app = front_stack
    token = bearer(app, "slow-uploaders", ["documents:write"])["Authorization"].split()[1]

    quiet = phase(front.url(""), front.port, app, "front_quiet")
    attacked = phase(front.url(""), front.port, app, "front_attack", token)
    attacked["p99_ratio_to_quiet"] = round(attacked["webhook_p99_ms"] / quiet["webhook_p99_ms"], 2)
    report(record_property, "slow clients, behind the front (quiet)", quiet)
    report(record_property, "slow clients, behind the front (attack)", attacked)

    for figures in (quiet, attacked):
        assert figures["acknowledged"] == figures["sent"] > 0
        assert figures["lost"] == 0 and figures["duplicated"] == 0, figures
        assert figures["webhook_errors"] == 0, figures
    assert attacked["uploads_201"] == UPLOADS, attacked  # slow users are served too
    # Starved, /livez fails or waits for seconds, probe after probe (bare gunicorn: 10 s,
    # and 5 failures). A stall of a second or two now and then is what a parallel
    # test's burst on the same two cores does to any process, slow clients or not.
    assert attacked["livez_failures"] == 0 and attacked["livez_max_ms"] < 5000, attacked
    assert attacked["livez_over_1s"] <= max(1, attacked["livez_probes"] // 10), attacked
    # The target is a p99 within 2x of the quiet one, and the report shows the ratio
    # (about 1 on a machine to itself). What is asserted is what a provider sees, so
    # that a parallel test's load on the same cores cannot fail it: every delivery
    # answered well inside a provider's timeout of a few seconds. Bare gunicorn, below,
    # answers none of them inside 15 s.
    assert attacked["webhook_p99_ms"] < 1000, (quiet, attacked)
    # The front let go of the slowloris connections (header timeout), over and over.
    assert attacked["slowloris_closed_by_server"] >= SLOWLORIS, attacked


def test_slow_clients_against_bare_gunicorn_are_reported(front_stack, record_property):
    # Why the front is there: the same attack straight at the `web` gunicorn, which
    # serves every route. Reported, not judged; nothing acknowledged may be lost.
    stack, _front, app = front_stack
    token = bearer(app, "slow-uploaders", ["documents:write"])["Authorization"].split()[1]
    quiet = phase(stack.url(""), stack.port, app, "bare_quiet")
    attacked = phase(stack.url(""), stack.port, app, "bare_attack", token)
    report(record_property, "slow clients, bare gunicorn (quiet)", quiet)
    report(record_property, "slow clients, bare gunicorn (attack)", attacked)
    for figures in (quiet, attacked):
        assert figures["acknowledged"] == figures["sent"] > 0
        assert figures["lost"] == 0 and figures["duplicated"] == 0, figures

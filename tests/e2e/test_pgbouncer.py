"""Sluice through PgBouncer in transaction pooling, as production deployments run it:
Debian's pgbouncer (1.18, so no prepared statements across transactions:
DATABASE_PREPARED_STATEMENTS=false), the processes connecting through it as the
application role, migrations going straight to PostgreSQL as the tables' owner. Ingest,
processing, the outbox relay and beat's jobs all work through it, and nothing relies
on session state: row-level security's owner is SET LOCAL, per transaction."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from cron.models import JobRun
from tests import services
from tests.e2e.conftest import STRIPE_SECRET, fresh_stack_environment
from tests.e2e.faults import report, tally
from tests.e2e.harness import Stack, app_settings
from tests.e2e.test_faults import assert_nothing_lost_or_doubled
from tests.e2e.webhook_load import deliver, payment_event
from tests.services import wait_for
from webapp import create_app
from webapp.extensions import db

pytestmark = pytest.mark.e2e
EVENTS = 400


def test_ingest_processing_relay_and_jobs_through_pgbouncer(
        tmp_path, worker_index, record_property):
    base = services.require_postgres()
    env = fresh_stack_environment(tmp_path, worker_index, "pgbouncer")
    direct = env["DATABASE_URL"]
    bouncer = services.PgBouncer(base).start()
    stack = Stack(tmp_path / "logs", {**env, "MIGRATION_DATABASE_URL": direct})
    reader = None
    try:
        stack.release()  # straight to PostgreSQL, as the tables' owner
        stack.env.update(DATABASE_URL=bouncer.url(services.as_app_role(direct)),
                         DATABASE_PREPARED_STATEMENTS="false")
        stack.start("web", "worker", "beat")
        stack.wait_ready()
        statuses = deliver(stack.url("/webhooks/stripe"), [
            payment_event(f"evt_bouncer_{i}", f"pi_bouncer_{i}") for i in range(EVENTS)],
            STRIPE_SECRET, connections=16)
        assert statuses == {202: EVENTS}, statuses
        reader = create_app({**app_settings(env), "DATABASE_URL": direct})
        figures = wait_for(lambda: (lambda t: t if t["processed"] == EVENTS else None)(
            tally(reader, "bouncer", EVENTS, set(range(EVENTS)))), timeout=120,
            interval=0.5, what="every event processed through pgbouncer")
        assert_nothing_lost_or_doubled(figures)

        def jobs_done():
            with reader.app_context():
                return db.session.scalar(select(func.count()).select_from(JobRun).where(
                    JobRun.outcome == "succeeded"))
        assert wait_for(jobs_done, timeout=60, interval=1, what="a job run by beat") >= 1
        database = direct.rsplit("/", 1)[1]
        transactions = sum(int(row["total_xact_count"]) for row in bouncer.show("STATS")
                           if row["database"] == database)
        assert transactions >= EVENTS, transactions  # it all went through the bouncer
        for name in ("web", "worker", "beat"):
            assert "prepared statement" not in stack.log(name), name
        report(record_property, "through pgbouncer (transaction pooling)",
               {**figures, "pgbouncer_transactions": transactions})
    finally:
        stack.stop()
        bouncer.stop()
        if reader is not None:
            reader.extensions["sluice.db"].engine.dispose()

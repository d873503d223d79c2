"""Under concurrent deliveries a gunicorn worker keeps its database connections: its
pool holds one per request thread (gunicorn.conf.py sizes it from the threads).

With SQLAlchemy's default pool of 5 and 8 threads, the connections past 5 were opened
for one request and closed as it ended: hundreds of new PostgreSQL connections a
second under load, and ingest fell to half its rate (bench/ingest, WEB_THREADS=8).
"""
from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import STRIPE_SECRET, fresh_stack_environment
from tests.e2e.harness import Stack
from tests.e2e.webhook_load import deliver, payment_event
from tests.services import require_postgres

pytestmark = pytest.mark.e2e

THREADS = 8


def sessions_opened(engine, database: str) -> int:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT sessions FROM pg_stat_database "
                                      "WHERE datname = :name"), {"name": database})


def test_a_busy_worker_keeps_one_connection_per_thread(tmp_path, worker_index):
    require_postgres()
    env = fresh_stack_environment(tmp_path, worker_index, "connection_pool")
    env.update(WEB_CONCURRENCY="1", WEB_THREADS=str(THREADS), LOG_LEVEL="WARNING")
    stack = Stack(tmp_path / "logs", env)
    stack.release()
    stack.start("web")
    observer = create_engine(env["DATABASE_URL"].replace("postgresql://",
                                                         "postgresql+psycopg://", 1))
    database = observer.url.database
    try:
        stack.wait_ready()
        time.sleep(1.5)  # backends report their sessions to the statistics within a second
        before = sessions_opened(observer, database)
        bodies = [payment_event(f"evt_pool_{i}", f"pi_pool_{i}") for i in range(800)]
        statuses = deliver(stack.url("/webhooks/stripe"), bodies, STRIPE_SECRET,
                           connections=2 * THREADS)
        assert statuses == {202: len(bodies)}
        time.sleep(1.5)
        opened = sessions_opened(observer, database) - before
        # Each request thread's connection, the pool's spare, and this test's reads.
        assert opened <= THREADS + 4, f"{opened} connections opened for {len(bodies)} deliveries"
    finally:
        stack.stop()
        observer.dispose()

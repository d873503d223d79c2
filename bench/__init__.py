"""Helpers the benchmarks share."""
from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

# Each bench alternates its measurements for this many rounds, so a slow spell of
# this shared machine hits both sides of a ratio.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """'median (min-max)' of a few runs."""
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}-{fmt.format(max(values))})")


def fresh_services(name: str, redis_db: int) -> tuple[Path, str, str]:
    """A work directory, a new PostgreSQL database and an emptied Redis database:
    (workdir, database_url, redis_url), from BENCH_DATABASE_URL and BENCH_REDIS_URL."""
    import redis

    from tests.services import fresh_postgres_database

    base_db = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("BENCH_REDIS_URL", f"redis://127.0.0.1:6379/{redis_db}")
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    print(f"process logs: {workdir}", flush=True)
    database_url = fresh_postgres_database(base_db, name.replace("-", "_"))
    redis.Redis.from_url(redis_url).flushdb()
    return workdir, database_url, redis_url

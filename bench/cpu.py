"""CPU and WAL per role, read from /proc and PostgreSQL: what the capacity model
(docs/capacity.md) is computed from.

A bench brackets one phase with `Meter.start()` and `Meter.stop()`, and divides what
each role spent by the work the phase did. The roles: a process tree Sluice started
(gunicorn's master and workers, a Celery worker and its pool), every PostgreSQL
process on this machine (the bench's database is the only one under load), and the
Redis server (by the pid it reports). The WAL PostgreSQL wrote is its write rate.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import redis
from sqlalchemy import text

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, its threads and its live descendants."""
    total = 0.0
    for one in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # gone between the listing and the read
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(child) for child in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def postgres_cpu() -> float:
    """CPU seconds of every live PostgreSQL process (backends, WAL writer,
    checkpointer...). A backend that exits takes its share with it, so a meter keeps
    its connections open across the phase (pooled connections are)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split("(", 1)[1].rsplit(")", 1)
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if name.startswith("postgres"):
            fields = rest.split()
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


@dataclasses.dataclass
class Meter:
    """What each role spent between start() and stop(): CPU seconds, WAL bytes."""
    engine: object            # the bench's database, for its WAL position
    redis_url: str
    processes: dict[str, int]  # role -> pid of a process tree Sluice started

    def _sample(self) -> dict[str, float]:
        with self.engine.connect() as connection:
            wal = float(connection.execute(text(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")).scalar())
        redis_pid = int(redis.Redis.from_url(self.redis_url).info("server")["process_id"])
        return {**{role: process_cpu(pid) for role, pid in self.processes.items()},
                "postgres": postgres_cpu(), "redis": process_cpu(redis_pid),
                "wal_bytes": wal}

    def start(self) -> "Meter":
        self._started = self._sample()
        return self

    def stop(self) -> dict[str, float]:
        ended = self._sample()
        return {key: ended[key] - self._started[key] for key in ended}


def per_unit(spent: dict[str, float], units: int) -> dict[str, float]:
    """CPU ms (and WAL bytes) per unit of work."""
    return {key: (value if key == "wal_bytes" else 1000 * value) / units
            for key, value in spent.items()}

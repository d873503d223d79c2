"""The capacity model: from CPU per delivery measured in this run (bench/cpu.py), the
cores and hosts each role needs at a given rate of deliveries, and which single
component saturates first. docs/capacity.md explains it; `make bench` reruns it.

Web hosts and worker hosts scale out: their need is the rate times their CPU per
delivery. PostgreSQL and Redis are one primary each: their need must fit one host,
and Redis executes commands on one thread, so one core is its ceiling.
"""
from __future__ import annotations

import math
import os

RATES = (100, 1_000, 10_000)  # deliveries/s
HOST_CORES = int(os.environ.get("CAPACITY_HOST_CORES", "8"))
UTILISATION = 0.7  # a host planned at 70 % busy keeps room for bursts and failover
SCALED_OUT = ("web", "worker")


def cores(ms_per_delivery: float, rate: float) -> float:
    return rate * ms_per_delivery / 1000


def model(ms: dict[str, float], wal_bytes: float) -> list[str]:
    """Lines for the bench's output: `ms` is CPU ms per delivery by role (web, worker,
    postgres, redis), `wal_bytes` PostgreSQL's WAL per delivery."""
    usable = HOST_CORES * UTILISATION
    lines = [f"capacity model ({HOST_CORES}-core hosts at {UTILISATION:.0%}; CPU ms per "
             "delivery: " + ", ".join(f"{role} {value:.2f}" for role, value in ms.items())
             + f"; WAL {wal_bytes / 1024:.1f} KiB per delivery)"]
    for rate in RATES:
        need = {role: cores(value, rate) for role, value in ms.items()}
        hosts = ", ".join(f"{role} {math.ceil(need[role] / usable)} host(s) "
                          f"({need[role]:.1f} cores)" for role in SCALED_OUT)
        lines.append(f"  {rate:>6}/s: {hosts}; postgres {need['postgres']:.1f} cores, "
                     f"redis {need['redis']:.2f} of its one core; "
                     f"WAL {rate * wal_bytes / 2**20:.1f} MiB/s")
    limits = ceilings(ms)
    lines.append("  single-primary ceilings: " + ", ".join(
        f"{role} {value:,.0f}/s" for role, value in limits.items())
        + f"; {min(limits, key=limits.get)} saturates first")
    return lines


def ceilings(ms: dict[str, float]) -> dict[str, float]:
    """Deliveries/s at which each single primary is planned full: PostgreSQL on one
    host, Redis on its one command thread."""
    return {"postgres": HOST_CORES * UTILISATION * 1000 / ms["postgres"],
            "redis": UTILISATION * 1000 / ms["redis"]}

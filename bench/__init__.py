"""Helpers the benchmarks share."""
from __future__ import annotations

import os
import statistics

# Each bench alternates its measurements for this many rounds, so a slow spell of
# this shared machine hits both sides of a ratio.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """'median (min-max)' of a few runs."""
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}-{fmt.format(max(values))})")

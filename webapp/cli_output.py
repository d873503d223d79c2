"""How the CLI prints: tables under column headers, times a person reads, and a sentence
when there is nothing to list."""
from __future__ import annotations

import click

from webapp import readable


def when(value) -> str:
    return readable.when(value, seconds=False)


def echo_table(headers: tuple[str, ...], rows: list[tuple], empty: str) -> None:
    """Rows under their column headers, aligned; or `empty` when there are none."""
    if not rows:
        click.echo(empty)
        return
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    for row in cells:
        click.echo("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]).rstrip())

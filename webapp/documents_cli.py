"""`flask documents read-text`: queue the reading of clean documents never read (those
stored before text extraction existed); the `enrich` workers read them."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from documents.text import enrich
from webapp.extensions import db

documents_cli = AppGroup("documents", help="Documents.")


@documents_cli.command("read-text")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              help="Queue at most this many (run again for more).")
def read_text(limit: int) -> None:
    """Queue text extraction for clean documents that have no text state. Idempotent: a
    document is queued once (its text state becomes `pending`)."""
    queued = enrich.queue_missing(db.session, limit)
    db.session.commit()
    click.echo(f"queued {queued} document(s) for reading")

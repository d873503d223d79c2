"""`flask keys status`: which data key seals how many values, per sealed column;
`flask keys rotate`: reseal every value under the first key of DATA_KEYS
(store/sealing.py)."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from store import data_keys, sealing
from webapp.cli_output import echo_table
from webapp.config import ConfigError
from webapp.extensions import db
from webapp.models import metadata


def refuse_dropped_keys(app: Flask) -> None:
    """At start: ConfigError, naming the key and its count, if DATA_KEYS no longer lists
    a key that still seals values (store/data_keys.py). A database that cannot be
    asked yet (away, or before `flask db upgrade`) is not a reason to refuse: the next
    start asks again."""
    state = app.extensions["sluice.db"]
    session = state.sessionmaker()
    try:
        in_use = data_keys.dropped_in_use(session, metadata, sealing.ring())
        session.commit()
    except SQLAlchemyError:  # the first request or task says so, if it is still away
        session.rollback()
        return
    finally:
        session.close()
        # no connection stays pooled: a worker or gunicorn forks after this, and a
        # connection shared across a fork corrupts both sides' conversations
        state.engine.dispose()
    if in_use:
        key_id, count = next(iter(sorted(in_use.items())))
        raise ConfigError(f"DATA_KEYS no longer lists key {key_id!r}, which still seals "
                          f"{count} values: list it again (after the new key) and run "
                          "`flask keys rotate` before dropping it")


keys_cli = AppGroup("keys", help="The data keys that seal personal data at rest.")


@keys_cli.command("status")
def status() -> None:
    """Each sealed column's values per key id ("plaintext": written before sealing).
    A key may leave DATA_KEYS once no value is under it."""
    ring = sealing.ring()
    counts = sealing.key_counts(db.session, metadata)
    db.session.rollback()
    click.echo(f"DATA_KEYS: {', '.join(ring.ids)} (seals with {ring.primary})")
    rows = [(column, key_id, count) for column, found in counts.items()
            for key_id, count in sorted(found.items())]
    echo_table(("column", "key", "values"), rows, "No sealed values yet.")
    totals: dict[str, int] = {}
    for found in counts.values():
        for key_id, count in found.items():
            totals[key_id] = totals.get(key_id, 0) + count
    for key_id in ring.ids[1:]:
        left = totals.get(key_id, 0)
        click.echo(f"key {key_id}: {left} values" + (" left; run `flask keys rotate`" if left
                                                     else "; it may leave DATA_KEYS"))
    if totals.get("plaintext"):
        click.echo(f"{totals['plaintext']} values are not sealed yet; run `flask keys rotate`")


@keys_cli.command("rotate")
@click.option("--batch", default=500, show_default=True, help="Values resealed per commit.")
def rotate(batch: int) -> None:
    """Reseal every value not under the first key (and seal those written before sealing),
    in committed batches: stop it any time and run it again; a second run finds nothing."""
    ring = sealing.ring()
    done = sealing.rotate(db.session, metadata, batch=batch,
                          progress=lambda column, count: click.echo(f"{column}: {count}"))
    total = sum(done.values())
    click.echo(f"resealed {total} values under {ring.primary}"
               + "".join(f"; {column} {count}" for column, count in done.items() if count))

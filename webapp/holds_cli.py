"""`flask holds list|place|release`: legal holds from a shell, through the same
operations as the admin API (store/holds.py)."""
from __future__ import annotations

import getpass

import click
from flask.cli import AppGroup

from store import holds
from store.clients import client_id_named
from webapp.cli_output import echo_table, when
from webapp.extensions import db

holds_cli = AppGroup("holds", help="Legal holds: data kept whatever deletion or retention.")


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@holds_cli.command("list")
@click.option("--released", is_flag=True, help="Released holds too.")
def list_holds(released: bool) -> None:
    rows = [(hold.id, hold.scope, hold.document_id or hold.owner_id or
             f"{hold.subject_kind} {hold.subject_index[:12]}…", when(hold.placed_at),
             hold.placed_by, when(hold.released_at) if hold.released_at else "active",
             hold.reason) for hold in holds.holds(db.session, released)]
    echo_table(("id", "scope", "covers", "placed", "by", "released", "reason"), rows,
               "No holds.")


@holds_cli.command("place")
@click.option("--document", type=int, help="A document's id.")
@click.option("--owner", help="An API client's name: everything it owns.")
@click.option("--phone")
@click.option("--email")
@click.option("--customer")
@click.option("--reason", required=True, help="Why (a case number, an authority).")
def place(document, owner, phone, email, customer, reason) -> None:
    """Place a hold on exactly one document, owner or data subject."""
    owner_id = None
    if owner is not None:
        owner_id = client_id_named(db.session, owner)
        if owner_id is None:
            raise click.BadParameter(f"no API client is called {owner!r}", param_hint="--owner")
    subjects = {kind: value for kind, value in
                (("phone", phone), ("email", email), ("customer", customer)) if value}
    kind, value = next(iter(subjects.items())) if len(subjects) == 1 else (None, None)
    if len(subjects) > 1:
        raise click.UsageError("a hold covers one subject: give one of --phone, --email, "
                               "--customer")
    try:
        hold = holds.place(db.session, holds.Target(document, owner_id, kind, value), reason,
                           _actor())
    except holds.InvalidHold as exc:
        raise click.UsageError(str(exc)) from None
    db.session.commit()
    click.echo(f"hold {hold.id} placed on {hold.scope}")


@holds_cli.command("release")
@click.argument("hold_id", type=int)
def release(hold_id: int) -> None:
    try:
        holds.release(db.session, hold_id, _actor())
    except holds.HoldNotFound:
        raise click.ClickException(f"no active hold {hold_id}") from None
    db.session.commit()
    click.echo(f"hold {hold_id} released")

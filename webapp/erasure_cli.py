"""`flask erasure --phone … [--dry-run]`: erasure by data subject from a shell, through
the same operation as the admin API (privacy/erasure.py)."""
from __future__ import annotations

import getpass

import click
from flask.cli import with_appcontext

from privacy import erasure as operations
from tasks.app_state import storage
from webapp.cli_output import echo_table
from webapp.extensions import db


def echo_report(report: dict) -> None:
    verb = "would erase" if report["dry_run"] else "erased"
    click.echo(f"subject {report['subject']['kind']} {report['subject']['index']}")
    echo_table(("record", verb, "kept by a hold"),
               [(kind, count, report["kept"][kind]) for kind, count in report["records"].items()],
               "")
    for hold in report["holds"]:
        click.echo(f"hold {hold['id']} ({hold['scope']}): {hold['reason']}")


@click.command("erasure")
@click.option("--phone")
@click.option("--email")
@click.option("--customer")
@click.option("--dry-run", is_flag=True, help="Count only; erase nothing.")
@click.option("--yes", is_flag=True, help="Erase without asking.")
@with_appcontext
def erasure_cli(phone, email, customer, dry_run: bool, yes: bool) -> None:
    """Erase what Sluice holds about one person (one of --phone, --email, --customer).
    Shows what it finds first, and asks, unless --yes."""
    given = {kind: value for kind, value in
             (("phone", phone), ("email", email), ("customer", customer)) if value}
    if len(given) != 1:
        raise click.UsageError("name one person: one of --phone, --email, --customer")
    try:
        subject = operations.subject(*next(iter(given.items())))
    except operations.InvalidSubject as exc:
        raise click.UsageError(str(exc)) from None
    actor = f"cli:{getpass.getuser()}"
    report = operations.erase(db.session, storage(), subject, actor, dry_run=True)
    echo_report(report)
    if dry_run or not any(report["records"].values()):
        return
    if not yes:
        click.confirm("Erase these records?", abort=True)
    echo_report(operations.erase(db.session, storage(), subject, actor, dry_run=False))

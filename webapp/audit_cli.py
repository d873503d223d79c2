"""`flask audit export --before DATE [--delete]`, `flask audit exports`: the audit log's
old entries, exported to the object store and only then deleted (cron/audit_archive.py)."""
from __future__ import annotations

import datetime as dt
import getpass

import click
from flask.cli import AppGroup

from cron import audit_archive
from cron.audit_archive import ExportFailed, export_before
from documents.storage import StorageUnavailable
from tasks.app_state import storage
from webapp.cli_output import echo_table, when
from webapp.extensions import db

audit_cli = AppGroup("audit", help="The audit log: export old entries, then delete them.")


@audit_cli.command("export")
@click.option("--before", "before", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="Export the entries older than this day (UTC, a day in the past).")
@click.option("--delete", "delete_after", is_flag=True,
              help="Then delete the entries the export covers (never others).")
def export(before: dt.datetime, delete_after: bool) -> None:
    """Write the entries older than --before to the blob store as gzip JSON Lines, read
    the object back and check its SHA-256, record the export; with --delete, delete the
    entries it covers. The audit log refuses every other deletion."""
    cut = before.replace(tzinfo=dt.timezone.utc)
    try:
        done = export_before(db.session, storage(), cut, f"cli:{getpass.getuser()}",
                             delete_after)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--before") from None
    except (ExportFailed, StorageUnavailable) as exc:
        raise click.ClickException(f"nothing recorded, nothing deleted: {exc}") from None
    if done.export is None:
        click.echo(f"no entry is older than {cut:%Y-%m-%d}")
        return
    click.echo(f"exported {done.export.entries} entries (ids {done.export.first_id}-"
               f"{done.export.last_id}) to {done.export.object_key}, "
               f"sha256 {done.export.sha256}, {done.export.size} bytes")
    if delete_after:
        click.echo(f"deleted {done.deleted} entries from the audit log")


@audit_cli.command("exports")
def exports() -> None:
    """Every export: when, what it covers, where it is, and how many entries it let go."""
    rows = [(e.id, when(e.exported_at), f"< {e.cut:%Y-%m-%d}", e.entries,
             f"{e.first_id}-{e.last_id}", e.deleted, e.object_key, e.sha256)
            for e in audit_archive.exports(db.session)]
    echo_table(("id", "exported", "cut", "entries", "ids", "deleted", "object", "sha256"),
               rows, "No exports.")

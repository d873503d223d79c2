"""`flask clients ...` and `flask webhooks ...` commands (`flask db` is webapp/migrate.py)."""
from __future__ import annotations

import getpass
import json

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import IntegrityError

from store.clients import ClientNotFound, all_clients, revoke_client
from webapp.audit_cli import audit_cli
from webapp.auth import KNOWN_SCOPES, create_client
from webapp.cli_output import echo_table, when
from webapp.cron_cli import cron_cli
from webapp.destinations_cli import destinations_cli
from webapp.documents_cli import documents_cli
from webapp.erasure_cli import erasure_cli
from webapp.extensions import db
from webapp.holds_cli import holds_cli
from webapp.keys_cli import keys_cli
from webapp.storage_cli import storage_cli
from webhooks.models import EVENT_STATUSES
from webhooks.operations import (
    EventFilter,
    EventNotFound,
    MediaNotFound,
    find_events,
    list_media,
    replay,
    replay_matching,
    retry_media,
)
from whatsapp.models import MEDIA_STATUSES

clients_cli = AppGroup("clients", help="API clients and their tokens.")
webhooks_cli = AppGroup("webhooks", help="Stored webhook events and dead letters.")


@clients_cli.command("create")
@click.argument("name")
@click.option("--scopes", required=True,
              help=f"Comma-separated, one or more of: {', '.join(KNOWN_SCOPES)} "
                   "(admin: the console and the admin API)")
def clients_create(name: str, scopes: str) -> None:
    """Create a client and print its token. The token is shown only this once."""
    session = db.session
    try:
        client, token = create_client(session, name, [s for s in scopes.split(",") if s])
        session.commit()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scopes") from None
    except IntegrityError:
        raise click.ClickException(f"a client named {name!r} already exists") from None
    click.echo(f"client {client.name} (id {client.id}) scopes: {client.scopes or '(none)'}")
    click.echo(f"token (store it now, it is not shown again): {token}")


@clients_cli.command("list")
def clients_list() -> None:
    """Every client, with its state and scopes."""
    rows = [(client.id, client.name, f"revoked {when(client.revoked_at)}"
             if client.revoked_at else "active", when(client.created_at),
             client.scopes or "(none)")
            for client in all_clients(db.session)]
    echo_table(("ID", "NAME", "STATE", "CREATED", "SCOPES"), rows,
               "No API clients yet: flask --app webapp clients create NAME --scopes ...")


@clients_cli.command("revoke")
@click.argument("name")
def clients_revoke(name: str) -> None:
    try:
        client, revoked = revoke_client(db.session, name)
    except ClientNotFound:
        raise click.ClickException(f"no client named {name!r}") from None
    if not revoked:
        click.echo(f"{name} was already revoked ({when(client.revoked_at)})")
        return
    db.session.commit()
    click.echo(f"revoked {name}: its tokens, download links and console sessions end now")


@webhooks_cli.command("list")
@click.option("--status", type=click.Choice(EVENT_STATUSES))
@click.option("--source")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
def webhooks_list(status: str | None, source: str | None, limit: int) -> None:
    """List stored events, newest first."""
    rows = [(event.id, when(event.received_at), event.source, event.event_type or "-",
             event.status, event.attempts, event.last_error or "")
            for event in find_events(db.session, EventFilter(status=status, source=source),
                                     limit=limit)]
    echo_table(("ID", "RECEIVED", "SOURCE", "TYPE", "STATUS", "ATTEMPTS", "LAST ERROR"), rows,
               "No webhook events match.")


@webhooks_cli.command("replay")
@click.argument("event_id", required=False, type=int)
@click.option("--status", type=click.Choice(EVENT_STATUSES),
              help="Replay every event in this status (e.g. dead).")
def webhooks_replay(event_id: int | None, status: str | None) -> None:
    """Run the handler again for one event, or for every event in a status (oldest first,
    up to OPS_REPLAY_CAP, as the console's "Replay all matching" does)."""
    from flask import current_app

    actor = f"cli:{getpass.getuser()}"
    if event_id is not None and status is not None:
        raise click.UsageError("give an EVENT_ID or --status, not both")
    if event_id is None and status is None:
        raise click.UsageError("give the EVENT_ID of one event to replay, or --status STATUS "
                               "(e.g. --status dead) to replay every event in it")
    if event_id is not None:
        try:
            replay(db.session, event_id, actor=actor)
        except EventNotFound:
            raise click.ClickException(f"no webhook event {event_id}") from None
        count = 1
    else:
        cap = current_app.config["OPS_REPLAY_CAP"]
        count = replay_matching(db.session, EventFilter(status=status), cap, actor)
    db.session.commit()
    click.echo(f"replaying {count} event(s)" if count else "No events to replay.")


@webhooks_cli.group("media", invoke_without_command=True)
@click.option("--status", type=click.Choice(MEDIA_STATUSES))
@click.option("--source")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.pass_context
@with_appcontext  # a group's own callback does not get the app context its commands get
def webhooks_media(context: click.Context, status: str | None, source: str | None,
                   limit: int) -> None:
    """WhatsApp media items, newest first (e.g. --status failed or expired)."""
    if context.invoked_subcommand is not None:
        return
    rows = [(media.id, media.source, media.wamid, media.kind, media.status,
             media.document_id or "-",
             f"{media.error_code}: {media.error_message}" if media.error_code else "")
            for media in list_media(db.session, status=status, source=source, limit=limit)]
    echo_table(("ID", "SOURCE", "MESSAGE", "KIND", "STATUS", "DOCUMENT", "REASON"), rows,
               "No WhatsApp media items match.")


@webhooks_media.command("retry")
@click.argument("media_id", type=int)
def webhooks_media_retry(media_id: int) -> None:
    """Fetch one media item again."""
    try:
        retry_media(db.session, media_id, actor=f"cli:{getpass.getuser()}")
    except MediaNotFound:
        raise click.ClickException(f"no WhatsApp media item {media_id}") from None
    db.session.commit()
    click.echo(f"fetching media {media_id} again")


@webhooks_cli.command("send-test")
@click.argument("source")
@click.option("--url", help="Post to this URL (the deployed /webhooks/SOURCE) instead of "
                            "through this app in-process.")
def webhooks_send_test(source: str, url: str | None) -> None:
    """Sign a sample event with SOURCE's own secret and send it, as `stripe trigger` does."""
    from tasks.app_state import sources
    from webapp.webhook_views import send_test_delivery

    found = sources().get(source)
    if found is None:
        raise click.ClickException(f"no webhook source named {source!r}")
    if not found.can_verify:
        names = ", ".join(found.secrets_env) or "(none: the source names no secrets_env)"
        raise click.ClickException(f"{source} has no secret: set {names} in the environment "
                                   "of this command and of the service")
    status, answer = send_test_delivery(found, url)
    click.echo(f"{status} {json.dumps(answer)}")
    if status >= 300:
        raise SystemExit(1)


def register_commands(app: Flask) -> None:
    app.cli.add_command(clients_cli)
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(cron_cli)
    app.cli.add_command(storage_cli)
    app.cli.add_command(documents_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(destinations_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(holds_cli)
    app.cli.add_command(erasure_cli)

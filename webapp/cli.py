"""`flask clients ...` and `flask webhooks ...` commands (`flask db` is webapp/migrate.py)."""
from __future__ import annotations

import getpass
import json

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.auth import KNOWN_SCOPES, ApiClient, create_client
from webapp.cron_cli import cron_cli
from webapp.storage_cli import storage_cli
from webapp.extensions import db
from store.db import utcnow
from webhooks.models import EVENT_STATUSES
from webhooks.processing import EventNotFound, list_events, replay
from webhooks.whatsapp.media import MediaNotFound, list_media, retry as retry_media
from webhooks.whatsapp.models import MEDIA_STATUSES

clients_cli = AppGroup("clients", help="API clients and their tokens.")
webhooks_cli = AppGroup("webhooks", help="Stored webhook events and dead letters.")


@clients_cli.command("create")
@click.argument("name")
@click.option("--scopes", default="", help=f"Comma-separated: {', '.join(KNOWN_SCOPES)}")
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
    for client in db.session.scalars(select(ApiClient).order_by(ApiClient.id)):
        state = "revoked" if client.revoked_at else "active"
        click.echo(f"{client.id}\t{client.name}\t{state}\t{client.scopes}")


@clients_cli.command("revoke")
@click.argument("name")
def clients_revoke(name: str) -> None:
    client = db.session.scalar(select(ApiClient).where(ApiClient.name == name))
    if client is None:
        raise click.ClickException(f"no client named {name!r}")
    client.revoked_at = client.revoked_at or utcnow()
    db.session.commit()
    click.echo(f"revoked {name}")


@webhooks_cli.command("list")
@click.option("--status", type=click.Choice(EVENT_STATUSES))
@click.option("--source")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
def webhooks_list(status: str | None, source: str | None, limit: int) -> None:
    """List stored events, newest first."""
    for event in list_events(db.session, status=status, source=source, limit=limit):
        click.echo(f"{event.id}\t{event.source}\t{event.event_type or '-'}\t{event.status}"
                   f"\t{event.attempts}\t{event.last_error or ''}")


@webhooks_cli.command("replay")
@click.argument("event_id", required=False, type=int)
@click.option("--status", type=click.Choice(EVENT_STATUSES),
              help="Replay every event in this status (e.g. dead).")
def webhooks_replay(event_id: int | None, status: str | None) -> None:
    """Run the handler again for one event, or for every event in a status."""
    if (event_id is None) == (status is None):
        raise click.UsageError("give an EVENT_ID or --status, not both")
    ids = [event_id] if event_id else [
        e.id for e in list_events(db.session, status=status, limit=10000)]
    try:
        for one in ids:
            replay(db.session, one, actor=f"cli:{getpass.getuser()}")
    except EventNotFound:
        raise click.ClickException(f"no webhook event {event_id}") from None
    db.session.commit()
    click.echo(f"replaying {len(ids)} event(s)")


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
    for media in list_media(db.session, status=status, source=source, limit=limit):
        reason = f"{media.error_code}: {media.error_message}" if media.error_code else ""
        click.echo(f"{media.id}\t{media.source}\t{media.wamid}\t{media.kind}\t{media.status}"
                   f"\t{media.document_id or '-'}\t{reason}")


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
    from flask import current_app

    from tasks import SOURCES_KEY
    from webapp.webhook_views import send_test_delivery

    found = current_app.extensions[SOURCES_KEY].get(source)
    if found is None:
        raise click.ClickException(f"no webhook source named {source!r}")
    if not found.secrets:
        raise click.ClickException(f"{source} has no secret set in its environment variables")
    status, answer = send_test_delivery(found, url)
    click.echo(f"{status} {json.dumps(answer)}")
    if status >= 300:
        raise SystemExit(1)


def register_commands(app: Flask) -> None:
    app.cli.add_command(clients_cli)
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(cron_cli)
    app.cli.add_command(storage_cli)

"""`flask db ...` and `flask clients ...` commands."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp import migrate
from webapp.auth import KNOWN_SCOPES, ApiClient, create_client
from webapp.extensions import db
from webhooks.db import utcnow

db_cli = AppGroup("db", help="Database migrations (Alembic).")
clients_cli = AppGroup("clients", help="API clients and their tokens.")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    migrate.upgrade(current_app.config["DATABASE_URL"], revision)


@db_cli.command("downgrade")
@click.argument("revision", default="-1")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (default: one step)."""
    migrate.downgrade(current_app.config["DATABASE_URL"], revision)


@db_cli.command("current")
def db_current() -> None:
    """Print the database's revision and whether it is at head."""
    current = migrate.database_heads(db.session.connection())
    heads = migrate.script_heads()
    click.echo(f"{' '.join(sorted(current)) or '(none)'}"
               f"{' (head)' if current == heads else ' (behind: head is ' + ' '.join(heads) + ')'}")


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


def register_commands(app: Flask) -> None:
    app.cli.add_command(db_cli)
    app.cli.add_command(clients_cli)

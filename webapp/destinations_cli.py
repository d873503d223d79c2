"""`flask destinations ...`: the team's endpoints, as the admin API and the console
manage them (the same operations in deliveries/destinations.py), audited as `cli:USER`."""
from __future__ import annotations

import datetime as dt
import getpass

import click
from flask.cli import AppGroup

from deliveries import destinations as ops
from deliveries.models import DELIVERY_STATUSES
from store.db import utcnow
from webapp.cli_output import echo_table, when
from webapp.extensions import db

destinations_cli = AppGroup("destinations", help="Where Sluice's events are delivered.")


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _get(destination_id: int):
    try:
        return ops.get(db.session, destination_id, for_update=True)
    except ops.DestinationNotFound:
        raise click.ClickException(f"no destination with id {destination_id}") from None


def _invalid(exc: ops.InvalidDestination) -> click.ClickException:
    return click.ClickException(f"{exc} ({exc.code})")


@destinations_cli.command("create")
@click.argument("name")
@click.argument("url")
@click.option("--events", required=True, help="Comma-separated types or families: "
                                              "payment.*,document.scanned (or * for all).")
@click.option("--owner", type=int, help="An API client's id: only its objects' events.")
@click.option("--allow-network", "networks", multiple=True,
              help="A CIDR the URL may resolve into although not public (repeatable).")
@click.option("--allow-http", is_flag=True, help="Allow plain http (internal receivers).")
def create(name: str, url: str, events: str, owner: int | None, networks: tuple[str, ...],
           allow_http: bool) -> None:
    """Create a destination and print its signing secret (shown only this once)."""
    try:
        destination, secret = ops.create(
            db.session, _actor(), name=name, url=url,
            event_types=[e.strip() for e in events.split(",") if e.strip()], owner_id=owner,
            allowed_networks=list(networks), allow_http=allow_http)
    except ops.InvalidDestination as exc:
        raise _invalid(exc) from None
    db.session.commit()
    click.echo(f"destination {destination.id} ({destination.name}) -> {destination.url}")
    click.echo(f"secret (store it now, it is not shown again): {secret}")


@destinations_cli.command("list")
def list_() -> None:
    """Every destination, with its state, backlog and success over the last hour."""
    found = ops.find(db.session)
    figures = ops.figures(db.session, [d.id for d in found])
    rows = []
    for d in found:
        f = figures[d.id]
        rate = f"{f.success_rate_hour:.0%}" if f.success_rate_hour is not None else "-"
        rows.append((d.id, d.name, d.state + (" (paused)" if d.paused else ""), f.backlog,
                     f"{rate} of {f.attempts_hour}", f.failed, d.url))
    echo_table(("ID", "NAME", "STATE", "BACKLOG", "OK 1H", "FAILED", "URL"), rows,
               "No destinations yet: flask --app webapp destinations create NAME URL "
               "--events 'payment.*'")


@destinations_cli.command("pause")
@click.argument("destination_id", type=int)
def pause(destination_id: int) -> None:
    """Hold its deliveries (they keep accumulating) until it is resumed."""
    ops.change(db.session, _get(destination_id), _actor(), paused=True)
    db.session.commit()
    click.echo(f"destination {destination_id} paused")


@destinations_cli.command("resume")
@click.argument("destination_id", type=int)
def resume(destination_id: int) -> None:
    """Send again, oldest first; re-enables a destination its breaker disabled."""
    destination = ops.change(db.session, _get(destination_id), _actor(), paused=False)
    db.session.commit()
    click.echo(f"destination {destination_id} resumed ({destination.state})")


@destinations_cli.command("rotate-secret")
@click.argument("destination_id", type=int)
@click.option("--grace-seconds", type=int, default=ops.ROTATION_GRACE_DEFAULT, show_default=True,
              help="How long the old secret keeps signing beside the new one.")
def rotate(destination_id: int, grace_seconds: int) -> None:
    try:
        secret = ops.rotate_secret(db.session, _get(destination_id), _actor(), grace_seconds)
    except ops.InvalidDestination as exc:
        raise _invalid(exc) from None
    db.session.commit()
    click.echo(f"new secret (store it now, it is not shown again): {secret}")


@destinations_cli.command("send-test")
@click.argument("destination_id", type=int)
def send_test(destination_id: int) -> None:
    """Send a sluice.test event to this destination alone."""
    delivery = ops.send_test(db.session, _get(destination_id), _actor())
    db.session.commit()
    click.echo(f"test delivery {delivery.id} queued")


@destinations_cli.command("deliveries")
@click.argument("destination_id", type=int)
@click.option("--status", type=click.Choice(DELIVERY_STATUSES))
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
def deliveries(destination_id: int, status: str | None, limit: int) -> None:
    """Its deliveries, newest first."""
    rows = ops.deliveries(db.session, _get(destination_id), status=status, limit=limit)
    echo_table(("ID", "EVENT", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR"),
               [(d.id, event_id or "(purged)", event_type or "", d.status, d.attempts,
                 when(d.created_at), d.last_error or "") for d, event_id, event_type in rows],
               "No deliveries.")


@destinations_cli.command("retry")
@click.argument("destination_id", type=int)
@click.argument("delivery_id", type=int)
def retry(destination_id: int, delivery_id: int) -> None:
    try:
        ops.retry(db.session, _get(destination_id), delivery_id, _actor())
    except ops.DeliveryNotFound:
        raise click.ClickException(f"no delivery {delivery_id} for that destination") from None
    db.session.commit()
    click.echo(f"delivery {delivery_id} is due again")


@destinations_cli.command("recover")
@click.argument("destination_id", type=int)
@click.option("--hours", type=click.IntRange(1, 24 * 30), default=24, show_default=True,
              help="Deliveries that failed for good, created this many hours back.")
def recover(destination_id: int, hours: int) -> None:
    until = utcnow()
    count = ops.recover(db.session, _get(destination_id), _actor(),
                        until - dt.timedelta(hours=hours), until)
    db.session.commit()
    click.echo(f"{count} failed deliveries are due again")


@destinations_cli.command("delete")
@click.argument("destination_id", type=int)
def delete(destination_id: int) -> None:
    ops.remove(db.session, _get(destination_id), _actor())
    db.session.commit()
    click.echo(f"destination {destination_id} deleted")

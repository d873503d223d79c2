"""Destinations: the team's endpoints, and what the admin API, the CLI and the console
may do with them. Every change is audited; a secret is returned once, when made.

Where a destination may point follows the SSRF rules of media fetching
(store/fetch.py): https unless `allow_http`, and every address the host resolves
to must be public unless it lies in the destination's `allowed_networks` (internal
receivers are usually private: the admin says so explicitly). The URL is checked
here, at creation and change, and again on every connection when sending (DNS can
change in between).
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import ipaddress
import re
import secrets
import socket
from typing import Any, Iterable

from sqlalchemy import Integer, cast, delete, func, select, update
from sqlalchemy.orm import Session

from deliveries.models import (
    ACTIVE,
    FAILED,
    IN_FLIGHT,
    PENDING,
    Delivery,
    DeliveryAttempt,
    Destination,
)
from store import audit, events
from store.db import utcnow
from store.fetch_policy import FetchPolicy, FetchRefused

SECRET_PREFIX = "whsec_"
ROTATION_GRACE_DEFAULT = 24 * 3600
ROTATION_GRACE_MAX = 7 * 24 * 3600
NAME_MAX, URL_MAX, TYPES_MAX, NETWORKS_MAX = 100, 2048, 50, 20
# "payment.updated", a family "payment.*", or "*" for every type
_EVENT_PATTERN = re.compile(r"\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?")


class DestinationNotFound(LookupError):
    pass


class InvalidDestination(ValueError):
    """What the caller asked for cannot be a destination; `code` says which rule."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def new_secret() -> str:
    """32 random bytes, base64, as Standard Webhooks' own libraries expect them."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def policy_for(destination: Destination, connect_timeout: float,
               read_timeout: float) -> FetchPolicy:
    return FetchPolicy(allowed_hosts=None, allow_http=destination.allow_http,
                       allowed_networks=tuple(destination.allowed_networks or ()),
                       connect_timeout=connect_timeout, read_timeout=read_timeout)


def check_url(url: str, allow_http: bool, allowed_networks: Iterable[str]) -> None:
    """InvalidDestination unless `url` may receive deliveries, as it resolves now."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise InvalidDestination("invalid_url", f"url is a URL of at most {URL_MAX} characters.")
    policy = FetchPolicy(allowed_hosts=None, allow_http=allow_http,
                         allowed_networks=tuple(allowed_networks))
    try:
        origin = policy.check_url(url)
        host = origin.host[1:-1] if origin.host.startswith("[") else origin.host
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(
                host, origin.port, type=socket.SOCK_STREAM)}
        except (OSError, UnicodeError):
            raise InvalidDestination("url_unresolvable",
                                     "The URL's host does not resolve.") from None
        for address in addresses:
            policy.check_address(address)
    except FetchRefused as refused:
        raise InvalidDestination(refused.code, _REFUSALS.get(refused.code, str(refused))) \
            from None


_REFUSALS = {
    "scheme_refused": "Destinations must use https (allow_http permits http).",
    "address_refused": "The URL resolves to an address that is not public; name its "
                       "network in allowed_networks to allow it.",
}


def _networks(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > NETWORKS_MAX:
        raise InvalidDestination("invalid_networks",
                                 f"allowed_networks is a list of at most {NETWORKS_MAX} CIDRs.")
    try:
        return [str(ipaddress.ip_network(item, strict=False)) for item in value]
    except (TypeError, ValueError):
        raise InvalidDestination("invalid_networks",
                                 "allowed_networks holds something that is not a CIDR.") from None


def _event_types(value: Any) -> list[str]:
    if (not isinstance(value, list) or not value or len(value) > TYPES_MAX
            or not all(isinstance(v, str) and len(v) <= 64 and _EVENT_PATTERN.fullmatch(v)
                       for v in value)):
        raise InvalidDestination(
            "invalid_events", "events is a list of event types or families "
                              "(payment.updated, payment.*, or * for all).")
    return sorted(set(value))


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX \
            or not value.isprintable():
        raise InvalidDestination("invalid_name",
                                 f"name is printable text of at most {NAME_MAX} characters.")
    return value.strip()


def matches(patterns: Iterable[str], event_type: str) -> bool:
    return any(p == "*" or p == event_type or (p.endswith(".*") and
                                               event_type.startswith(p[:-1]))
               for p in patterns)


def create(session: Session, actor: str, *, name: Any, url: Any, event_types: Any,
           owner_id: int | None = None, allowed_networks: Any = None,
           allow_http: bool = False) -> tuple[Destination, str]:
    """A new destination and its secret (shown this once)."""
    networks = _networks(allowed_networks)
    if not isinstance(allow_http, bool):
        raise InvalidDestination("invalid_allow_http", "allow_http is true or false.")
    destination = Destination(name=_name(name), url=url, event_types=_event_types(event_types),
                              owner_id=owner_id, allowed_networks=networks,
                              allow_http=allow_http, secret=new_secret(), paused=False,
                              state=ACTIVE, consecutive_failures=0)
    check_url(url, allow_http, networks)
    session.add(destination)
    session.flush()
    audit.record(session, actor, "destination.create", "destination", destination.id,
                 {"name": destination.name, "url": url, "events": destination.event_types,
                  "owner_id": owner_id, "allowed_networks": networks,
                  "allow_http": allow_http})
    return destination, destination.secret


def find(session: Session, owner_id: int | None = None) -> list[Destination]:
    """Every destination, or those of one owner."""
    query = select(Destination).order_by(Destination.id)
    if owner_id is not None:
        query = query.where(Destination.owner_id == owner_id)
    return list(session.scalars(query))


def get(session: Session, destination_id: int, owner_id: int | None = None,
        for_update: bool = False) -> Destination:
    """One destination; another owner's looks exactly like a missing one."""
    query = select(Destination).where(Destination.id == destination_id)
    if owner_id is not None:
        query = query.where(Destination.owner_id == owner_id)
    if for_update:
        query = query.with_for_update()
    destination = session.scalar(query)
    if destination is None:
        raise DestinationNotFound(destination_id)
    return destination


def change(session: Session, destination: Destination, actor: str, *, url: Any = None,
           event_types: Any = None, paused: Any = None) -> Destination:
    """Change the URL, the event types or the pause switch. Resuming also re-enables a
    destination its breaker disabled, and gives it a fresh run of failures."""
    detail: dict[str, Any] = {}
    if event_types is not None:
        destination.event_types = detail["events"] = _event_types(event_types)
    if url is not None:
        check_url(url, destination.allow_http, destination.allowed_networks or ())
        destination.url = detail["url"] = url
    if paused is not None:
        if not isinstance(paused, bool):
            raise InvalidDestination("invalid_paused", "paused is true or false.")
        destination.paused = detail["paused"] = paused
        if not paused and destination.state != ACTIVE:
            detail["state"] = {"from": destination.state, "to": ACTIVE}
            close_breaker(destination)
    audit.record(session, actor, "destination.change", "destination", destination.id, detail)
    return destination


def close_breaker(destination: Destination) -> None:
    destination.state, destination.consecutive_failures = ACTIVE, 0
    destination.failing_since = destination.next_probe_at = None


def remove(session: Session, destination: Destination, actor: str) -> None:
    """The destination and its deliveries' history go; the audit trail stays."""
    audit.record(session, actor, "destination.delete", "destination", destination.id,
                 {"name": destination.name, "url": destination.url})
    ids = select(Delivery.id).where(Delivery.destination_id == destination.id)
    session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids)))
    session.execute(delete(Delivery).where(Delivery.destination_id == destination.id))
    session.delete(destination)


def rotate_secret(session: Session, destination: Destination, actor: str,
                  grace_seconds: Any = None) -> str:
    """A new secret; the old one goes on signing beside it for `grace_seconds`, so a
    receiver can switch at its own pace."""
    grace = ROTATION_GRACE_DEFAULT if grace_seconds is None else grace_seconds
    if not isinstance(grace, int) or isinstance(grace, bool) \
            or not 0 <= grace <= ROTATION_GRACE_MAX:
        raise InvalidDestination(
            "invalid_grace", f"grace_seconds is a whole number from 0 to {ROTATION_GRACE_MAX}.")
    destination.previous_secret = destination.secret if grace else None
    destination.previous_secret_until = utcnow() + dt.timedelta(seconds=grace) if grace \
        else None
    destination.secret = new_secret()
    audit.record(session, actor, "destination.rotate_secret", "destination", destination.id,
                 {"grace_seconds": grace})
    return destination.secret


def signing_secrets(destination: Destination, now: dt.datetime) -> list[str]:
    """The secrets to sign with now: the current one, and the previous one in its grace."""
    found = [destination.secret]
    if destination.previous_secret and destination.previous_secret_until \
            and now < destination.previous_secret_until:
        found.append(destination.previous_secret)
    return found


class DeliveryNotFound(LookupError):
    pass


def deliveries(session: Session, destination: Destination, *, status: str | None = None,
               limit: int = 50, before_id: int | None = None) -> list:
    """Newest first: rows of (Delivery, the event's public id, its type), the event's
    None once retention purged it."""
    query = (select(Delivery, events.Event.public_id, events.Event.type)
             .outerjoin(events.Event, events.Event.id == Delivery.event_id)
             .where(Delivery.destination_id == destination.id))
    if status is not None:
        query = query.where(Delivery.status == status)
    if before_id is not None:
        query = query.where(Delivery.id < before_id)
    return list(session.execute(query.order_by(Delivery.id.desc()).limit(limit)).all())


def attempts_of(session: Session, delivery_ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
    found: dict[int, list[DeliveryAttempt]] = {i: [] for i in delivery_ids}
    if delivery_ids:
        for attempt in session.scalars(select(DeliveryAttempt).where(
                DeliveryAttempt.delivery_id.in_(delivery_ids)).order_by(DeliveryAttempt.id)):
            found[attempt.delivery_id].append(attempt)
    return found


def retry(session: Session, destination: Destination, delivery_id: int,
          actor: str) -> Delivery:
    """Send a delivery again now (one more attempt after a failure)."""
    delivery = session.scalar(select(Delivery).where(
        Delivery.id == delivery_id, Delivery.destination_id == destination.id)
        .with_for_update())
    if delivery is None:
        raise DeliveryNotFound(delivery_id)
    if delivery.status not in IN_FLIGHT:
        delivery.status, delivery.next_attempt_at, delivery.finished_at = (
            PENDING, utcnow(), None)
    audit.record(session, actor, "delivery.retry", "delivery", delivery.id,
                 {"destination_id": destination.id})
    return delivery


def recover(session: Session, destination: Destination, actor: str,
            since: dt.datetime, until: dt.datetime) -> int:
    """Send again every delivery that failed for good, created in [since, until)."""
    count = session.execute(update(Delivery).where(
        Delivery.destination_id == destination.id, Delivery.status == FAILED,
        Delivery.created_at >= since, Delivery.created_at < until).values(
        status=PENDING, next_attempt_at=utcnow(), finished_at=None)).rowcount
    audit.record(session, actor, "destination.recover", "destination", destination.id,
                 {"since": since.isoformat(), "until": until.isoformat(), "deliveries": count})
    return count


TEST_EVENT = "sluice.test"


def send_test(session: Session, destination: Destination, actor: str) -> Delivery:
    """A `sluice.test` event for this destination alone, sent the way every event is
    (the fan-out leaves test events to the destination they name)."""
    public_id = events.record(session, TEST_EVENT, {
        "destination_id": destination.id, "message": "A test delivery from Sluice."},
        owner_id=destination.owner_id)
    event_id = session.scalar(select(events.Event.id).where(events.Event.public_id == public_id))
    delivery = Delivery(destination_id=destination.id, event_id=event_id, status=PENDING,
                        attempts=0, next_attempt_at=utcnow())
    session.add(delivery)
    session.flush()
    audit.record(session, actor, "destination.send_test", "destination", destination.id,
                 {"delivery_id": delivery.id})
    return delivery


@dataclasses.dataclass(frozen=True)
class Figures:
    """How a destination is doing, for the API's and the console's pages."""
    backlog: int
    oldest_waiting: dt.datetime | None
    attempts_hour: int
    success_rate_hour: float | None
    attempts_day: int
    success_rate_day: float | None
    failed: int


def figures(session: Session, destination_ids: list[int]) -> dict[int, Figures]:
    """Figures for each destination in a few grouped queries."""
    if not destination_ids:
        return {}
    now = utcnow()
    waiting = {row[0]: (row[1], row[2]) for row in session.execute(
        select(Delivery.destination_id, func.count(), func.min(Delivery.created_at))
        .where(Delivery.destination_id.in_(destination_ids),
               Delivery.status.in_((PENDING,) + IN_FLIGHT))
        .group_by(Delivery.destination_id))}
    failed = dict(session.execute(
        select(Delivery.destination_id, func.count())
        .where(Delivery.destination_id.in_(destination_ids), Delivery.status == FAILED)
        .group_by(Delivery.destination_id)).all())

    def rates(since: dt.datetime) -> dict[int, tuple[int, int]]:
        return {row[0]: (row[1], int(row[2] or 0)) for row in session.execute(
            select(DeliveryAttempt.destination_id, func.count(),
                   func.sum(cast(DeliveryAttempt.succeeded, Integer())))
            .where(DeliveryAttempt.destination_id.in_(destination_ids),
                   DeliveryAttempt.attempted_at >= since)
            .group_by(DeliveryAttempt.destination_id))}
    hour, day = rates(now - dt.timedelta(hours=1)), rates(now - dt.timedelta(days=1))

    def rate(found: tuple[int, int] | None) -> float | None:
        return round(found[1] / found[0], 4) if found and found[0] else None
    return {i: Figures(backlog=waiting.get(i, (0, None))[0],
                       oldest_waiting=waiting.get(i, (0, None))[1],
                       attempts_hour=hour.get(i, (0, 0))[0], success_rate_hour=rate(hour.get(i)),
                       attempts_day=day.get(i, (0, 0))[0], success_rate_day=rate(day.get(i)),
                       failed=failed.get(i, 0))
            for i in destination_ids}

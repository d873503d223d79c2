"""The dispatcher: the event log fanned out into deliveries, and what is due handed out.

`dispatch()` runs in every worker's relay thread each DELIVERY_POLL_INTERVAL (and as
beat's `dispatch_deliveries` job, the safety net), in two short transactions:

1. Fan-out. The dispatcher reads the event log as any consumer of the feed does,
   after its cursor (one row, `delivery_fanout`, locked while it works, so two
   dispatchers never fan out the same events), and writes one delivery for each
   destination that wants each event: its types match, it is not disabled, it
   existed when the event was written, and, for a destination with an owner, the
   event is about that owner's objects. The deliveries and the cursor's move commit
   together, so an event is fanned out exactly once, and the feed's gap-freedom
   (store/events.py) means none is skipped.
2. Hand-out. For each destination that is open and not paused, its oldest due
   deliveries are queued through the outbox, up to DESTINATION_MAX_IN_FLIGHT at a time:
   a slow receiver holds at most that many of the `deliveries` workers, never the
   others' share. A destination whose breaker is open (`failing`) gets one probe per
   DESTINATION_PROBE_INTERVAL. A delivery handed out but not finished after
   DELIVERY_REDRIVE_AFTER (its message lost with a broker, its worker killed
   mid-send) is handed out again.

Retries wait in the database (`next_attempt_at`), never in a broker countdown: on
Redis a countdown longer than the visibility timeout is redelivered again and again.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from deliveries.destinations import TEST_EVENT, matches
from deliveries.models import (
    DISABLED,
    FAILING,
    IN_FLIGHT,
    PENDING,
    QUEUED,
    Delivery,
    Destination,
    FanoutCursor,
)
from store import events
from store.db import insert_unless_exists, utcnow
from store.outbox import enqueue
from store.task_names import DELIVER

CURSOR_ROW = 1


@dataclasses.dataclass(frozen=True)
class DispatchSettings:
    fanout_batch: int = 1000
    max_in_flight: int = 8
    probe_interval: float = 60.0
    redrive_after: float = 120.0

    @classmethod
    def from_config(cls, config) -> DispatchSettings:
        return cls(fanout_batch=config["DELIVERY_FANOUT_BATCH"],
                   max_in_flight=config["DESTINATION_MAX_IN_FLIGHT"],
                   probe_interval=config["DESTINATION_PROBE_INTERVAL"],
                   redrive_after=config["DELIVERY_REDRIVE_AFTER"])


@dataclasses.dataclass
class DispatchResult:
    fanned_out: int = 0      # events read from the log
    created: int = 0         # deliveries written for them
    queued: int = 0          # deliveries handed to the `deliveries` queue
    redriven: int = 0        # handed out again after DELIVERY_REDRIVE_AFTER


def dispatch(session: Session, settings: DispatchSettings) -> DispatchResult:
    """One pass: fan out what the log holds (in batches, until it is read), then hand
    out what is due. Commits its own transactions."""
    result = DispatchResult()
    while True:
        read, created = fan_out(session, settings.fanout_batch)
        session.commit()
        result.fanned_out += read
        result.created += created
        if read < settings.fanout_batch:
            break
    result.redriven = redrive_stale(session, settings.redrive_after)
    session.commit()
    result.queued = hand_out(session, settings)
    session.commit()
    return result


def _cursor(session: Session) -> FanoutCursor | None:
    """The cursor row, locked; None while another dispatcher holds it."""
    query = select(FanoutCursor).where(FanoutCursor.id == CURSOR_ROW)
    cursor = session.scalar(query.with_for_update(skip_locked=True))
    if cursor is None and session.scalar(select(func.count()).select_from(FanoutCursor)) == 0:
        insert_unless_exists(session, FanoutCursor, {"id": CURSOR_ROW, "txid": 0, "event_id": 0},
                             unique=["id"])
        session.commit()
        cursor = session.scalar(query.with_for_update(skip_locked=True))
    return cursor


def fan_out(session: Session, batch: int) -> tuple[int, int]:
    """(events read, deliveries written), in the caller's transaction."""
    cursor = _cursor(session)
    if cursor is None:
        return 0, 0
    found = events.read_events(
        session, events.Visibility(all_events=True), after=(cursor.txid, cursor.event_id),
        limit=batch, columns=(events.Event.txid, events.Event.id, events.Event.type,
                              events.Event.owner_id, events.Event.created_at))
    if not found:
        return 0, 0
    destinations = session.execute(select(
        Destination.id, Destination.event_types, Destination.owner_id, Destination.created_at)
        .where(Destination.state != DISABLED)).all()
    now = utcnow()
    rows = [{"destination_id": d.id, "event_id": e.id, "status": PENDING, "attempts": 0,
             "next_attempt_at": now, "created_at": now}
            for e in found if e.type != TEST_EVENT  # a test names its one destination
            for d in destinations
            if (d.owner_id is None or d.owner_id == e.owner_id)
            and e.created_at >= d.created_at and matches(d.event_types, e.type)]
    if rows:
        session.execute(insert(Delivery.__table__), rows)
    cursor.txid, cursor.event_id = found[-1].txid, found[-1].id
    return len(found), len(rows)


def redrive_stale(session: Session, after: float) -> int:
    """Deliveries handed out longer than `after` ago and not finished go back to
    pending: the claim (sending.claim) takes a queued row once, so the late original
    message, if it comes, finds nothing to do."""
    cutoff = utcnow() - dt.timedelta(seconds=after)
    return session.execute(update(Delivery).where(
        Delivery.status.in_(IN_FLIGHT), Delivery.enqueued_at < cutoff)
        .values(status=PENDING, next_attempt_at=utcnow())).rowcount


def hand_out(session: Session, settings: DispatchSettings) -> int:
    now = utcnow()
    # Each destination is handed out by one dispatcher at a time (the others skip it):
    # its in-flight count and its probe are decided once.
    destinations = session.scalars(
        select(Destination).where(Destination.paused.is_(False), Destination.state != DISABLED)
        .order_by(Destination.id).with_for_update(skip_locked=True)).all()
    if not destinations:
        return 0
    in_flight = dict(session.execute(
        select(Delivery.destination_id, func.count())
        .where(Delivery.status.in_(IN_FLIGHT),
               Delivery.destination_id.in_([d.id for d in destinations]))
        .group_by(Delivery.destination_id)).all())
    queued = 0
    for destination in destinations:
        busy = in_flight.get(destination.id, 0)
        if destination.state == FAILING:
            if busy or (destination.next_probe_at and destination.next_probe_at > now):
                continue
            room = 1  # the probe
        else:
            room = settings.max_in_flight - busy
        if room <= 0:
            continue
        ids = list(session.scalars(
            select(Delivery.id)
            .where(Delivery.destination_id == destination.id, Delivery.status == PENDING,
                   Delivery.next_attempt_at <= now)
            .order_by(Delivery.id).limit(room).with_for_update(skip_locked=True)))
        if not ids:
            continue
        session.execute(update(Delivery).where(Delivery.id.in_(ids))
                        .values(status=QUEUED, enqueued_at=now))
        for delivery_id in ids:
            enqueue(session, DELIVER, {"delivery_id": delivery_id})
        if destination.state == FAILING:
            destination.next_probe_at = now + dt.timedelta(seconds=settings.probe_interval)
        queued += len(ids)
    return queued

"""The event log: what Sluice learned (a payment moved, a message arrived, a document
got its verdict, an import finished), for the team's own systems to read.

An event is written by the domain that makes the change, in the same transaction as
the change: no change without its event, no event without its change (a rolled-back
transaction leaves neither). Its `data` is the object's state after the change; the
envelope the API serves is Standard Webhooks' `{"id", "type", "timestamp", "data"}`.

Reading without gaps. Ids are handed out at INSERT but transactions commit in any
order, so a reader returning `id > cursor` can see event 12 before event 11 commits,
move its cursor past 11 and never see it. On PostgreSQL each row also records the id
of the transaction that wrote it (`txid`, the column's server default
`pg_current_xact_id()`), and a reader returns only rows whose transaction is older
than every transaction still running (`pg_snapshot_xmin` of its snapshot): no row
with a smaller (txid, id) can appear after that. Rows come in (txid, id) order and
the cursor is that pair. A long transaction anywhere in the cluster (snapshots span
its databases) holds the feed back while it runs; it never makes it skip. (A
transaction also sees the events it wrote itself, as it sees its other writes.)
SQLite has one writer at a time (every
transaction that writes begins IMMEDIATE), so its ids commit in order: txid is 0
there and the order is the id's.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import re
import secrets
from typing import Any, Iterable

from sqlalchemy import (
    BigInteger,
    FetchedValue,
    Index,
    Integer,
    String,
    and_,
    bindparam,
    insert,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, BigIntId, UTCDateTime, insert_unless_exists, utcnow
from store.sealing import SealedJSON

PAYMENT_UPDATED = "payment.updated"
MESSAGE_RECEIVED = "whatsapp.message.received"
MESSAGE_STATUS = "whatsapp.message.status"
DOCUMENT_SCANNED = "document.scanned"
IMPORT_FINISHED = "import.finished"
WEBHOOK_RECEIVED = "webhook.received"


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # the writing transaction's id on PostgreSQL (0 on SQLite): migration 0013's default
    txid: Mapped[int] = mapped_column(BigInteger(), server_default=FetchedValue())
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int | None] = mapped_column(Integer())
    data: Mapped[dict] = mapped_column(SealedJSON())  # sealed at rest (store/sealing.py)
    # the blind index of the person the event is about, if any: erasure scrubs its data
    subject_index: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_events_txid_id", "txid", "id"),
                      Index("ix_events_created_at", "created_at"),
                      Index("ix_events_subject_index", "subject_index"))

    def envelope(self) -> dict[str, Any]:
        return envelope(self.public_id, self.type, self.created_at, self.data)


def envelope(public_id: str, event_type: str, created_at: dt.datetime,
             data: dict[str, Any]) -> dict[str, Any]:
    """Standard Webhooks' envelope, as the feed serves an event and deliveries send it."""
    return {"id": public_id, "type": event_type, "timestamp": created_at.isoformat(),
            "data": data}


def record(session: Session, event_type: str, data: dict[str, Any],
           owner_id: int | None = None, subject_index: str | None = None) -> str:
    """Write an event in the caller's transaction (it exists once that commits), and
    return its public id. `subject_index`: the blind index of the person it is about.

    A Core INSERT, executed at once: every payment change and message takes this path,
    and the ORM's unit of work for it cost the drain measurable CPU per event."""
    public_id = "evt_" + secrets.token_hex(12)
    session.execute(_INSERT, {"public_id": public_id, "type": event_type,
                              "data": data, "owner_id": owner_id, "created_at": utcnow(),
                              "subject_index": subject_index})
    return public_id


_INSERT = insert(Event.__table__)


def record_once(session: Session, event_type: str, data: dict[str, Any], identity: str) -> str:
    """`record`, at most once per `identity` whatever runs it again (a redelivered task,
    a replay): the public id is derived from it, and the UNIQUE public_id keeps one."""
    public_id = "evt_" + hashlib.sha256(f"{event_type}\n{identity}".encode()).hexdigest()[:24]
    insert_unless_exists(session, Event, {
        "public_id": public_id, "type": event_type, "data": data, "owner_id": None,
        "created_at": utcnow(), "subject_index": None}, ["public_id"])
    return public_id


def insert_with_event(session: Session, model, values: dict[str, Any], unique: list[str],
                      event_type: str, data: dict[str, Any],
                      owner_id: int | None = None) -> bool:
    """INSERT a row unless its unique values exist and, only if it was written, its
    event: True if both were. On PostgreSQL one statement does both (a data-modifying
    CTE: the event is selected from the INSERT's RETURNING, so no row, no event), one
    round trip on the path every new payment takes; elsewhere two, in the caller's
    transaction either way. `data` is the row's state as written."""
    dialect = session.get_bind().dialect.name
    if dialect != "postgresql":
        if insert_unless_exists(session, model, values, unique) is None:
            return False
        record(session, event_type, data, owner_id)
        return True
    statement = _insert_with_event(model.__table__, tuple(values), tuple(unique))
    return session.connection().execute(statement, {
        **values, "event_public_id": "evt_" + secrets.token_hex(12), "event_type": event_type,
        "event_data": data, "event_owner_id": owner_id,
        "event_created_at": utcnow()}).first() is not None


@functools.lru_cache(maxsize=None)
def _insert_with_event(table, columns: tuple[str, ...], unique: tuple[str, ...]):
    """Built once per shape: a cached statement with the values as bound parameters."""
    inserted = (postgresql_insert(table)
                .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
                .on_conflict_do_nothing(index_elements=list(unique))
                .returning(table.c.id).cte("inserted"))
    event = (insert(Event.__table__).from_select(
        ["public_id", "type", "data", "owner_id", "created_at"],
        select(bindparam("event_public_id", type_=String()),
               bindparam("event_type", type_=String()),
               bindparam("event_data", type_=SealedJSON()),
               bindparam("event_owner_id", type_=Integer()),
               bindparam("event_created_at", type_=UTCDateTime())).select_from(inserted))
        .returning(Event.__table__.c.id).cte("event"))
    return select(inserted.c.id).select_from(inserted).join(event, true())


class InvalidCursor(ValueError):
    pass


CURSOR = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})")


def parse_cursor(value: str) -> tuple[int, int]:
    match = CURSOR.fullmatch(value)
    if match is None:
        raise InvalidCursor(value)
    return int(match.group(1)), int(match.group(2))


def cursor_of(event: Event) -> str:
    return f"{event.txid}.{event.id}"


@dataclasses.dataclass(frozen=True)
class Visibility:
    """Whose events a reader sees: everything (`all_events`), or its own objects' and
    the unowned events of the types its scopes cover (`unowned` prefixes, e.g.
    "payment.")."""
    all_events: bool = False
    owner_id: int | None = None
    unowned: tuple[str, ...] = ()

    def where(self, query):
        if self.all_events:
            return query
        seen = [Event.owner_id == self.owner_id] if self.owner_id is not None else []
        if self.unowned:
            seen.append(and_(Event.owner_id.is_(None),
                             or_(*[Event.type.startswith(prefix) for prefix in self.unowned])))
        return query.where(or_(*seen)) if seen else query.where(False)


def type_filter(patterns: Iterable[str]):
    """`payment.*` matches a family, anything else one type exactly."""
    clauses = [Event.type.startswith(p[:-1]) if p.endswith(".*") else Event.type == p
               for p in patterns]
    return or_(*clauses) if clauses else None


def read_events(session: Session, visibility: Visibility, *, after: tuple[int, int] | None,
                types: list[str] | None = None, limit: int = 100,
                columns: tuple | None = None) -> list:
    """Up to `limit` events after the cursor, in cursor order, only from transactions
    that can no longer be joined by an earlier one (see the module's docstring).
    Events, or rows of `columns` (Event attributes) when given."""
    query = visibility.where(select(*columns) if columns else select(Event))
    if after is not None:
        query = query.where(tuple_(Event.txid, Event.id) > tuple_(*after))
    if types:
        query = query.where(type_filter(types))
    if session.get_bind().dialect.name == "postgresql":
        # Finished transactions only; and the reader's own, which is final to itself
        # (a request that only reads has no transaction id, so this adds nothing).
        query = query.where(or_(
            Event.txid < sql_text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint"),
            Event.txid == sql_text("pg_current_xact_id_if_assigned()::text::bigint")))
    query = query.order_by(Event.txid, Event.id).limit(limit)
    return list(session.execute(query).all() if columns else session.scalars(query))

"""webhook_events' months on PostgreSQL (migration 0028): which there are, adding the
months ahead, dropping a month that retention has finished with, and turning the
plain table into a partitioned one (`flask db partition-events`).

The tables belong to the migrating role and the application owns none
(docs/deployment.md), so adding and dropping go through the two SECURITY DEFINER
functions the migration made, which do that and nothing else. SQLite, and a
PostgreSQL table not partitioned yet, have no months: `months` is empty there, and
retention deletes row by row.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MONTHS_AHEAD = 3
DAYS_AHEAD = 14
DEFAULT = "webhook_events_default"
# migration 0028's, on a populated table until it is partitioned
CLAIM_TRIGGER = "webhook_events_claim_key"
CLAIM_FUNCTION = "sluice_claim_webhook_event_key"
_BOUND_CHECK = "webhook_events_before_bound"
_PRIMARY_INDEX = "webhook_events_id_received_at"

_LIST = text(r"""
SELECT c.relname,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), $$FROM \('([^']+)'\)$$))[1]::timestamptz,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), $$TO \('([^']+)'\)$$))[1]::timestamptz,
       pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass('public.webhook_events')
ORDER BY 3 NULLS FIRST
""")


@dataclasses.dataclass(frozen=True)
class Partition:
    name: str
    lower: dt.datetime | None   # None: from the beginning (the plain table, attached whole)
    upper: dt.datetime | None   # None: the DEFAULT partition, which takes what no month does
    default: bool


def months(connection: Connection) -> list[Partition]:
    """Every partition of webhook_events, the DEFAULT one last; [] if it has none."""
    if connection.dialect.name != "postgresql":
        return []
    rows = connection.execute(_LIST).all()
    return sorted((Partition(*row) for row in rows), key=lambda part: part.default)


def add_ahead(connection: Connection, now: dt.datetime, span: str = "month") -> list[str]:
    """Add partitions of one `span` (month or day) from the last one's end until
    MONTHS_AHEAD months (DAYS_AHEAD days) after `now`'s: the names added. A row no
    partition covers would land in the DEFAULT partition."""
    ranges = [part.upper for part in months(connection) if not part.default]
    if not ranges:
        return []
    if span == "day":
        step, until = day_after, first_of_day(now) + dt.timedelta(days=DAYS_AHEAD + 1)
    else:
        step, until = month_after, first_of_month(now)
        for _ in range(MONTHS_AHEAD + 1):
            until = month_after(until)
    start, added = max(ranges), []
    while start < until:
        upper = step(start)
        added.append(add(connection, start, upper))
        start = upper
    return added


def add(connection: Connection, lower: dt.datetime, upper: dt.datetime) -> str:
    """Add the partition [lower, upper), through the owner's function: its name."""
    return connection.scalar(text("SELECT sluice_add_webhook_events_partition(:lower, :upper)"),
                             {"lower": lower, "upper": upper})


def drop(connection: Connection, name: str) -> None:
    """Detach and drop a month. The function refuses the DEFAULT partition, anything
    not a partition of webhook_events, and a month still holding work owed; it waits
    at most 2 s for its lock, so ingest is never held up for longer."""
    connection.execute(text("SELECT sluice_drop_webhook_events_partition(:name)"),
                       {"name": name})


def first_of_day(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def day_after(moment: dt.datetime) -> dt.datetime:
    return first_of_day(moment) + dt.timedelta(days=1)


def first_of_month(moment: dt.datetime) -> dt.datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_after(moment: dt.datetime) -> dt.datetime:
    return (first_of_month(moment) + dt.timedelta(days=32)).replace(day=1)


def create_indexes(connection: Connection) -> None:
    """The indexes of webhooks/models.py, by the names migrations gave them."""
    connection.execute(text("CREATE INDEX ix_webhook_events_status_received_at "
                            "ON webhook_events (status, received_at)"))
    connection.execute(text("CREATE INDEX ix_webhook_events_unlinked ON webhook_events (id) "
                            "WHERE NOT subjects_linked"))


def partition_events(engine: Engine, now: dt.datetime) -> str:
    """Turn a populated plain webhook_events into a partitioned one without downtime:
    what it did, in a sentence. For the tables' owner (`flask db partition-events`).

    1. Online, no writer kept waiting: any key still missing is claimed (none should
       be: migration 0028's trigger and copy), the (id, received_at) index a
       partition's primary key needs is built CONCURRENTLY, and a CHECK that every
       row is older than the day after tomorrow is added NOT VALID, then validated.
    2. One short transaction (`swap`): with that index and that CHECK in place,
       attaching the table as the first partition builds and scans nothing.
    """
    if engine.dialect.name != "postgresql":
        return "nothing to do: SQLite keeps a plain table"
    with engine.connect() as connection:
        if months(connection):
            return "nothing to do: webhook_events is partitioned already"
    bound = first_of_day(now) + dt.timedelta(days=2)  # the day after tomorrow
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(
            "INSERT INTO webhook_event_keys (source, event_key, event_id, received_at) "
            "SELECT source, event_key, id, received_at FROM webhook_events e WHERE NOT EXISTS"
            " (SELECT 1 FROM webhook_event_keys k WHERE k.event_id = e.id) "
            "ON CONFLICT DO NOTHING"))
        if connection.scalar(text(  # a build interrupted before leaves an invalid index
                "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = "
                f"to_regclass('{_PRIMARY_INDEX}')")):
            connection.execute(text(f"DROP INDEX CONCURRENTLY {_PRIMARY_INDEX}"))
        connection.execute(text(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {_PRIMARY_INDEX}"
                                " ON webhook_events (id, received_at)"))
        connection.execute(text(f"ALTER TABLE webhook_events DROP CONSTRAINT IF EXISTS "
                                f"{_BOUND_CHECK}"))
        connection.execute(text(f"ALTER TABLE webhook_events ADD CONSTRAINT {_BOUND_CHECK} "
                                f"CHECK (received_at < '{bound.isoformat()}') NOT VALID"))
        connection.execute(text(f"ALTER TABLE webhook_events VALIDATE CONSTRAINT {_BOUND_CHECK}"))
    started = time.monotonic()
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL lock_timeout = '5s'"))  # else fail, never stall
        swap(connection, now, bound)
    return (f"webhook_events is partitioned: its rows until {bound:%Y-%m-%d} are its first "
            f"partition (the table was locked {1000 * (time.monotonic() - started):.0f} ms)")


def swap(connection: Connection, now: dt.datetime, bound: dt.datetime | None) -> None:
    """In the caller's transaction: put a partitioned webhook_events in the plain
    one's place, with a DEFAULT partition and this month and MONTHS_AHEAD more. Given
    a `bound`, the plain table becomes the partition [MINVALUE, bound), its index
    and CHECK made beforehand (partition_events); without, it is dropped (empty)."""
    connection.execute(text("LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE"))
    old = f"webhook_events_until_{(bound or now):%Y%m%d}"
    for statement in (
            f"DROP TRIGGER IF EXISTS {CLAIM_TRIGGER} ON webhook_events",
            f"DROP FUNCTION IF EXISTS {CLAIM_FUNCTION}()",
            f"ALTER TABLE webhook_events RENAME TO {old}",
            f"ALTER TABLE {old} DROP CONSTRAINT uq_webhook_events_source_event_key",
            f"ALTER TABLE {old} DROP CONSTRAINT pk_webhook_events",
            *(f"ALTER INDEX {index} RENAME TO {index.replace('webhook_events', old)}"
              for index in ("ix_webhook_events_status_received_at",
                            "ix_webhook_events_unlinked")),
            f"CREATE TABLE webhook_events (LIKE {old} INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (received_at)",
            "ALTER TABLE webhook_events ADD CONSTRAINT pk_webhook_events "
            "PRIMARY KEY (id, received_at)"):
        connection.execute(text(statement))
    create_indexes(connection)
    connection.execute(text("ALTER SEQUENCE webhook_events_id_seq OWNED BY webhook_events.id"))
    if bound is not None:
        for statement in (
                f"ALTER TABLE {old} ADD CONSTRAINT {old}_pkey PRIMARY KEY USING INDEX "
                f"{_PRIMARY_INDEX}",
                f"ALTER TABLE webhook_events ATTACH PARTITION {old} "
                f"FOR VALUES FROM (MINVALUE) TO ('{bound.isoformat()}')",
                f"ALTER TABLE {old} DROP CONSTRAINT {_BOUND_CHECK}"):
            connection.execute(text(statement))
        start = bound
    else:
        connection.execute(text(f"DROP TABLE {old}"))
        start = first_of_month(now)
    connection.execute(text(f"CREATE TABLE {DEFAULT} PARTITION OF webhook_events DEFAULT"))
    add(connection, start, month_after(start))
    add_ahead(connection, now)

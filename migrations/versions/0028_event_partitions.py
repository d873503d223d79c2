"""webhook_event_keys decides duplicates; on PostgreSQL webhook_events becomes a table
range-partitioned by received_at, one partition a month, so that retention drops a
month instead of deleting its rows one by one (webhooks/partitions.py).

A unique constraint on a partitioned table must include the partition key, and
(source, event_key) does not: so the key moves to a narrow unpartitioned table of its
own, claimed before the event is written (store/outbox.insert_with_message).

An empty table is partitioned here. A populated one is partitioned later, without
downtime, by `flask db partition-events` (docs/operations.md), once no process of
the release before this one is left: those insert events without claiming a key,
and their insert cannot work on a partitioned table. Until then a trigger claims the
key of every event inserted, whoever inserts it, and the keys already there are
copied here in batches, each its own transaction, so no writer waits on the copy.

The application role owns no table (docs/deployment.md), and only an owner may add
or drop a partition: two SECURITY DEFINER functions do exactly that and no more.

SQLite keeps a plain table, its keys in the same key table.

The DDL that swaps the tables is shared with `flask db partition-events`, so it lives
in webhooks/partitions.py (`swap`); a later change there must keep this migration's
result the same.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

from store.db import UTCDateTime, utcnow
from webhooks import partitions

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

BATCH = 100_000
MIGRATION_LOCK_ID = 0x51C1CE  # migrations/env.py's, taken again after the copy

ADD_PARTITION = """
CREATE FUNCTION sluice_add_webhook_events_partition(lower timestamptz, upper timestamptz)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public SET lock_timeout = '2s' AS $fn$
DECLARE
    name text := 'webhook_events_' || to_char(lower AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF lower IS NULL OR upper IS NULL OR upper <= lower THEN
        RAISE EXCEPTION 'a partition needs lower < upper';
    END IF;
    -- made apart and then attached: ATTACH takes a lock that lets rows in,
    -- CREATE ... PARTITION OF one that stops them
    EXECUTE format('CREATE TABLE public.%I (LIKE public.webhook_events INCLUDING DEFAULTS)',
                   name);
    EXECUTE format('ALTER TABLE public.webhook_events ATTACH PARTITION public.%I '
                   'FOR VALUES FROM (%L) TO (%L)', name, lower, upper);
    RETURN name;
END $fn$
"""

DROP_PARTITION = """
CREATE FUNCTION sluice_drop_webhook_events_partition(name text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public SET lock_timeout = '2s' AS $fn$
DECLARE
    owed boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = 'public.webhook_events'::regclass
                     AND c.relname = name
                     AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT') THEN
        RAISE EXCEPTION 'not a month of webhook_events: %', name;
    END IF;
    EXECUTE format('LOCK TABLE public.%I IN SHARE MODE', name);
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM public.%I '
                   'WHERE status IN (''received'', ''failed''))', name) INTO owed;
    IF owed THEN
        RAISE EXCEPTION 'partition % still holds work owed', name;
    END IF;
    EXECUTE format('ALTER TABLE public.webhook_events DETACH PARTITION public.%I', name);
    EXECUTE format('DROP TABLE public.%I', name);
END $fn$
"""

# until `flask db partition-events`: the key of an event inserted by a process that
# does not claim it (the release before this one) is claimed all the same
CLAIM_KEY = f"""
CREATE FUNCTION {partitions.CLAIM_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO webhook_event_keys (source, event_key, event_id, received_at)
    VALUES (NEW.source, NEW.event_key, NEW.id, NEW.received_at) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $fn$
"""

FUNCTIONS = ("sluice_add_webhook_events_partition(timestamptz, timestamptz)",
             "sluice_drop_webhook_events_partition(text)")


def upgrade() -> None:
    op.create_table(
        "webhook_event_keys",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("event_key", sa.String(255), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_key", name=op.f("pk_webhook_event_keys")),
        sa.UniqueConstraint("event_id", name=op.f("uq_webhook_event_keys_event_id")),
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        op.execute("INSERT INTO webhook_event_keys (source, event_key, event_id, received_at)"
                   " SELECT source, event_key, id, received_at FROM webhook_events")
        with op.batch_alter_table("webhook_events") as batch:
            batch.drop_constraint("uq_webhook_events_source_event_key", type_="unique")
        return
    op.execute(ADD_PARTITION)
    op.execute(DROP_PARTITION)
    for function in FUNCTIONS:  # `flask db grant` grants them to the application role
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    if not bind.scalar(text("SELECT EXISTS (SELECT 1 FROM webhook_events)")):
        partitions.swap(bind, utcnow(), bound=None)
        return
    op.execute(CLAIM_KEY)
    op.execute(f"CREATE TRIGGER {partitions.CLAIM_TRIGGER} AFTER INSERT ON webhook_events "
               f"FOR EACH ROW EXECUTE FUNCTION {partitions.CLAIM_FUNCTION}()")
    # Committed as the block begins. Creating the trigger waited for every insert
    # under way, so every row the trigger did not see has an id up to this max(id).
    with op.get_context().autocommit_block():
        last = bind.scalar(text("SELECT coalesce(max(id), 0) FROM webhook_events"))
        for after in range(0, last, BATCH):
            bind.execute(text(
                "INSERT INTO webhook_event_keys (source, event_key, event_id, received_at) "
                "SELECT source, event_key, id, received_at FROM webhook_events "
                "WHERE id > :after AND id <= :upto ON CONFLICT DO NOTHING"),
                {"after": after, "upto": after + BATCH})
    # the block committed env.py's transaction: its lock and timeout went with it
    bind.execute(text("SET LOCAL lock_timeout = '5s'"))
    bind.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        with op.batch_alter_table("webhook_events") as batch:
            batch.create_unique_constraint("uq_webhook_events_source_event_key",
                                           ["source", "event_key"])
        op.drop_table("webhook_event_keys")
        return
    op.execute(f"DROP TRIGGER IF EXISTS {partitions.CLAIM_TRIGGER} ON webhook_events")
    op.execute(f"DROP FUNCTION IF EXISTS {partitions.CLAIM_FUNCTION}()")
    if partitions.months(bind):
        op.execute("CREATE TABLE webhook_events_plain (LIKE webhook_events INCLUDING DEFAULTS)")
        op.execute("INSERT INTO webhook_events_plain SELECT * FROM webhook_events")
        op.execute("ALTER SEQUENCE webhook_events_id_seq OWNED BY webhook_events_plain.id")
        op.execute("DROP TABLE webhook_events")
        op.execute("ALTER TABLE webhook_events_plain RENAME TO webhook_events")
        op.execute("ALTER TABLE webhook_events ADD CONSTRAINT pk_webhook_events "
                   "PRIMARY KEY (id)")
        op.execute("ALTER TABLE webhook_events ADD CONSTRAINT "
                   "uq_webhook_events_source_event_key UNIQUE (source, event_key)")
        partitions.create_indexes(bind)
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    op.drop_table("webhook_event_keys")

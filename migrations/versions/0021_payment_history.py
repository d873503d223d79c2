"""payment_history (payments/history.py): every change to a payment, written by a
trigger on payments, append-only like audit_log. On SQLite too (its own triggers).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = ("payment_id, operation, old_status, new_status, old_amount, new_amount, "
           "currency, event_id, changed_at")
CHANGED = ("NEW.status IS DISTINCT FROM OLD.status OR NEW.amount IS DISTINCT FROM "
           "OLD.amount OR NEW.currency IS DISTINCT FROM OLD.currency")

POSTGRESQL = f"""
CREATE FUNCTION payments_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO payment_history ({COLUMNS}) VALUES
            (NEW.id, 'insert', NULL, NEW.status, NULL, NEW.amount, NEW.currency,
             NEW.last_event_id, now());
    ELSIF TG_OP = 'UPDATE' THEN
        IF {CHANGED} THEN
            INSERT INTO payment_history ({COLUMNS}) VALUES
                (NEW.id, 'update', OLD.status, NEW.status, OLD.amount, NEW.amount,
                 NEW.currency, NEW.last_event_id, now());
        END IF;
    ELSE
        INSERT INTO payment_history ({COLUMNS}) VALUES
            (OLD.id, 'delete', OLD.status, NULL, OLD.amount, NULL, OLD.currency,
             OLD.last_event_id, now());
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_history AFTER INSERT OR UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_history();
CREATE FUNCTION payment_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment_history is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER payment_history_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON payment_history FOR EACH STATEMENT EXECUTE FUNCTION payment_history_append_only();
"""

NOW = "datetime('now')"
SQLITE = [
    f"""CREATE TRIGGER payments_history_insert AFTER INSERT ON payments BEGIN
        INSERT INTO payment_history ({COLUMNS}) VALUES
            (NEW.id, 'insert', NULL, NEW.status, NULL, NEW.amount, NEW.currency,
             NEW.last_event_id, {NOW});
    END""",
    f"""CREATE TRIGGER payments_history_update AFTER UPDATE ON payments
        WHEN {CHANGED.replace("IS DISTINCT FROM", "IS NOT")} BEGIN
        INSERT INTO payment_history ({COLUMNS}) VALUES
            (NEW.id, 'update', OLD.status, NEW.status, OLD.amount, NEW.amount, NEW.currency,
             NEW.last_event_id, {NOW});
    END""",
    f"""CREATE TRIGGER payments_history_delete AFTER DELETE ON payments BEGIN
        INSERT INTO payment_history ({COLUMNS}) VALUES
            (OLD.id, 'delete', OLD.status, NULL, OLD.amount, NULL, OLD.currency,
             OLD.last_event_id, {NOW});
    END""",
    """CREATE TRIGGER payment_history_no_update BEFORE UPDATE ON payment_history BEGIN
        SELECT RAISE(ABORT, 'payment_history is append-only (UPDATE refused)');
    END""",
    """CREATE TRIGGER payment_history_no_delete BEFORE DELETE ON payment_history BEGIN
        SELECT RAISE(ABORT, 'payment_history is append-only (DELETE refused)');
    END""",
]


def upgrade() -> None:
    op.create_table(
        "payment_history",
        sa.Column("id", ID, nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(10), nullable=False),
        sa.Column("old_status", sa.String(20), nullable=True),
        sa.Column("new_status", sa.String(20), nullable=True),
        sa.Column("old_amount", sa.BigInteger(), nullable=True),
        sa.Column("new_amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(10), nullable=True),
        sa.Column("event_id", sa.String(255), nullable=True),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_history")),
    )
    op.create_index("ix_payment_history_payment_id", "payment_history", ["payment_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL)
        # the payments already there start their history as they are now
        op.execute(f"INSERT INTO payment_history ({COLUMNS}) SELECT id, 'insert', NULL, "
                   "status, NULL, amount, currency, last_event_id, now() FROM payments")
    else:
        for statement in SQLITE:
            op.execute(statement)
        op.execute(f"INSERT INTO payment_history ({COLUMNS}) SELECT id, 'insert', NULL, "
                   f"status, NULL, amount, currency, last_event_id, {NOW} FROM payments")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER payment_history_append_only ON payment_history")
        op.execute("DROP FUNCTION payment_history_append_only()")
        op.execute("DROP TRIGGER payments_history ON payments")
        op.execute("DROP FUNCTION payments_history()")
    else:
        for name in ("payments_history_insert", "payments_history_update",
                     "payments_history_delete", "payment_history_no_update",
                     "payment_history_no_delete"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_index("ix_payment_history_payment_id", table_name="payment_history")
    op.drop_table("payment_history")

"""audit_exports (store/audit.py): the audit log stays append-only, except that an
entry a verified export covers may be deleted (`flask audit export --delete`).

PostgreSQL: the statement trigger keeps refusing UPDATE and TRUNCATE; DELETE gets a row
trigger that lets an entry go only when an export covers it (its id in the export's
range, and older than its cut). SQLite gets the same two rules as triggers of its own.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

COVERED = ("EXISTS (SELECT 1 FROM audit_exports e WHERE OLD.id BETWEEN e.first_id AND "
           "e.last_id AND OLD.at < e.cut)")
REFUSED = "audit_log is append-only (DELETE of an entry no export covers refused)"
FUNCTION = f"""
CREATE FUNCTION audit_log_delete_exported() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {COVERED} THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '{REFUSED}';
END
$$;
"""
STATEMENT_TRIGGER = ("CREATE TRIGGER audit_log_append_only BEFORE {events} ON audit_log "
                     "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")
UP = {
    "postgresql": ["DROP TRIGGER audit_log_append_only ON audit_log",
                   STATEMENT_TRIGGER.format(events="UPDATE OR TRUNCATE"), FUNCTION,
                   "CREATE TRIGGER audit_log_delete_exported BEFORE DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_delete_exported()"],
    "sqlite": ["CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN "
               "SELECT RAISE(ABORT, 'audit_log is append-only (UPDATE refused)'); END",
               f"CREATE TRIGGER audit_log_delete_exported BEFORE DELETE ON audit_log "
               f"WHEN NOT {COVERED} BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"],
}
DOWN = {
    "postgresql": ["DROP TRIGGER audit_log_delete_exported ON audit_log",
                   "DROP FUNCTION audit_log_delete_exported()",
                   "DROP TRIGGER audit_log_append_only ON audit_log",
                   STATEMENT_TRIGGER.format(events="UPDATE OR DELETE OR TRUNCATE")],
    "sqlite": ["DROP TRIGGER audit_log_delete_exported", "DROP TRIGGER audit_log_no_update"],
}


def upgrade() -> None:
    op.create_table(
        "audit_exports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("cut", UTCDateTime(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("exported_by", sa.String(100), nullable=False),
        sa.Column("exported_at", UTCDateTime(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_exports")),
        sa.UniqueConstraint("object_key", name=op.f("uq_audit_exports_object_key")),
    )
    for statement in UP[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWN[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_table("audit_exports")

"""Row-level security on PostgreSQL: every table with an owner shows a request made on
behalf of an owner only that owner's rows, whatever the query forgot to say.

A transaction acting for an owner sets `sluice.owner` to the owner's id with
`set_config(..., true)` (SET LOCAL: it ends with the transaction, so it is safe behind
PgBouncer's transaction pooling); one that sets nothing (the workers, the CLI, admin
requests, the console) is the system and sees every row. The policies are FORCEd, so
they bind the tables' owner too; only a superuser or a BYPASSRLS role passes them.

- documents, imports, uploads: the owner's rows;
- events: the owner's, and unowned ones (payments: shared, filtered by scope);
- destinations: the owner's (unowned ones are admins');
- import_rows: those of the imports the owner sees;
- legal_holds: read by anyone (a deletion on an owner's behalf must see what holds
  keep), written by the system only.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# NULL for the system (nothing set, or set to ''), else the owner a transaction acts for
FUNCTION = """
CREATE FUNCTION sluice_acting_owner() RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN coalesce(current_setting('sluice.owner', true), '') = '' THEN NULL
                ELSE current_setting('sluice.owner', true)::integer END
$$;
"""
SYSTEM = "sluice_acting_owner() IS NULL"
POLICIES = {
    "documents": f"{SYSTEM} OR owner_id = sluice_acting_owner()",
    "imports": f"{SYSTEM} OR owner_id = sluice_acting_owner()",
    "uploads": f"{SYSTEM} OR owner_id = sluice_acting_owner()",
    "destinations": f"{SYSTEM} OR owner_id = sluice_acting_owner()",
    "events": f"{SYSTEM} OR owner_id IS NULL OR owner_id = sluice_acting_owner()",
    # imports' own policy applies inside the subquery
    "import_rows": f"{SYSTEM} OR EXISTS (SELECT 1 FROM imports "
                   "WHERE imports.id = import_rows.import_id)",
    "legal_holds": SYSTEM,
}
# a deletion acting for an owner must still see every hold that stops it
READ_ALL = {"legal_holds"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no row-level security; its one process is the system
    op.execute(FUNCTION)
    for table, rule in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY owner_isolation ON {table} USING ({rule}) "
                   f"WITH CHECK ({rule})")
        if table in READ_ALL:
            op.execute(f"CREATE POLICY read_all ON {table} FOR SELECT USING (true)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in POLICIES:
        if table in READ_ALL:
            op.execute(f"DROP POLICY read_all ON {table}")
        op.execute(f"DROP POLICY owner_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION sluice_acting_owner()")

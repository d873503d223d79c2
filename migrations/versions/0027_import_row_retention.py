"""imports.counts and imports.rows_expired_at: an import's rows are kept
RETENTION_IMPORT_ROWS_DAYS after it finished; then purge_retention freezes its counts
on the import and deletes the rows that name no document (cron/retention.py).

Two nullable columns: no row is rewritten.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from store.db import JSONType, UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("imports", sa.Column("counts", JSONType))
    op.add_column("imports", sa.Column("rows_expired_at", UTCDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("rows_expired_at")
        batch.drop_column("counts")

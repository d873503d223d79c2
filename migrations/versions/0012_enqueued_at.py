"""Every asynchronous state can be redriven: documents, imports, WhatsApp media and
direct uploads get `enqueued_at`, when their work was last handed out (or, for an
import, last made progress), as webhook events have had since 0003.

Existing rows take their created_at, so the first redrive sees them as they are.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("documents", "imports", "whatsapp_media", "uploads")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("enqueued_at", UTCDateTime(), nullable=True))
        op.execute(f"UPDATE {table} SET enqueued_at = created_at WHERE enqueued_at IS NULL")
        op.create_index(f"ix_{table}_status_enqueued_at", table, ["status", "enqueued_at"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_status_enqueued_at", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("enqueued_at")

"""The event log (store/events.py): what Sluice learned, written in the transaction of
the change, read by a gap-free cursor of (txid, id).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from store.db import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    on_postgresql = op.get_bind().dialect.name == "postgresql"
    # The writing transaction's id: a reader returns only rows of transactions older
    # than every running one, so a late commit can never land behind its cursor.
    txid_default = sa.text("pg_current_xact_id()::text::bigint" if on_postgresql else "0")
    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("txid", sa.BigInteger(), server_default=txid_default, nullable=False),
        sa.Column("public_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                  nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("public_id", name=op.f("uq_events_public_id")),
    )
    op.create_index("ix_events_txid_id", "events", ["txid", "id"])
    op.create_index("ix_events_created_at", "events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_events_created_at", table_name="events")
    op.drop_index("ix_events_txid_id", table_name="events")
    op.drop_table("events")

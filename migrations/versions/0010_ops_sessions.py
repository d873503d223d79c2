"""Console sessions live on the server, so signing out ends them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_ops_sessions")),
    )
    op.create_index(op.f("ix_ops_sessions_client_id"), "ops_sessions", ["client_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ops_sessions_client_id"), table_name="ops_sessions")
    op.drop_table("ops_sessions")

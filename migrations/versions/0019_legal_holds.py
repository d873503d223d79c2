"""Legal holds (store/holds.py): a document, an owner or a data subject (by blind
index) whose data must be kept; released holds stay on record.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", ID, nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("document_id", sa.BigInteger(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("subject_kind", sa.String(16), nullable=True),
        sa.Column("subject_index", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("placed_by", sa.String(100), nullable=False),
        sa.Column("placed_at", UTCDateTime(), nullable=False),
        sa.Column("released_by", sa.String(100), nullable=True),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index("ix_legal_holds_released_at_scope", "legal_holds",
                    ["released_at", "scope"])


def downgrade() -> None:
    op.drop_index("ix_legal_holds_released_at_scope", table_name="legal_holds")
    op.drop_table("legal_holds")

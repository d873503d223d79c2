"""Documents.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mime_type", sa.String(100), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("signature", sa.String(255), nullable=True),
        sa.Column("scanner_version", sa.String(255), nullable=True),
        sa.Column("signatures_fingerprint", sa.String(64), nullable=True),
        sa.Column("scanned_at", UTCDateTime(), nullable=True),
        sa.Column("scan_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("owner_id", "sha256", name=op.f("uq_documents_owner_id_sha256")),
    )
    op.create_index("ix_documents_owner_id_status", "documents", ["owner_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_documents_owner_id_status", table_name="documents")
    op.drop_table("documents")

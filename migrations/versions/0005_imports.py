"""Bulk imports and their per-row records.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from store.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", ID, nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("archive_sha256", sa.String(64), nullable=False),
        sa.Column("archive_size", sa.BigInteger(), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=True),
        sa.Column("manifest_kind", sa.String(10), nullable=True),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("uncompressed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("error_code", sa.String(50), nullable=True),
        sa.Column("error_message", sa.String(500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
        sa.UniqueConstraint("owner_id", "archive_sha256",
                            name=op.f("uq_imports_owner_id_archive_sha256")),
    )
    op.create_table(
        "import_rows",
        sa.Column("id", ID, nullable=False),
        sa.Column("import_id", sa.BigInteger(), nullable=False),
        sa.Column("row_no", sa.Integer(), nullable=False),
        sa.Column("entry_name", sa.String(500), nullable=True),
        sa.Column("manifest_row", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("code", sa.String(50), nullable=True),
        sa.Column("message", sa.String(500), nullable=True),
        sa.Column("document_id", sa.BigInteger(), nullable=True),
        sa.Column("title", sa.String(255), nullable=True),
        sa.Column("external_ref", sa.String(255), nullable=True),
        sa.Column("tags", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_rows")),
        sa.UniqueConstraint("import_id", "row_no", name=op.f("uq_import_rows_import_id_row_no")),
    )


def downgrade() -> None:
    op.drop_table("import_rows")
    op.drop_table("imports")

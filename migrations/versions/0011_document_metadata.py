"""Documents carry their manifest's metadata: title, external reference, tags.

Until now these stayed in import_rows, which no route reads. The backfill takes each
document's from the first import row that linked it and had any.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("title", sa.String(255), nullable=True))
        batch.add_column(sa.Column("external_ref", sa.String(255), nullable=True))
    op.create_index("ix_documents_owner_id_external_ref", "documents",
                    ["owner_id", "external_ref"])
    op.create_table(
        "document_tags",
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("document_id", "tag", name=op.f("pk_document_tags")),
    )
    op.create_index("ix_document_tags_tag", "document_tags", ["tag", "document_id"])
    _backfill()


def _backfill() -> None:
    bind = op.get_bind()
    for column in ("title", "external_ref"):
        bind.execute(sa.text(
            f"UPDATE documents SET {column} = (SELECT r.{column} FROM import_rows r "
            f"WHERE r.document_id = documents.id AND r.{column} IS NOT NULL "
            f"ORDER BY r.id LIMIT 1) WHERE {column} IS NULL"))
    tags = sa.table("document_tags", sa.column("document_id"), sa.column("tag"))
    seen, pending = set(), []
    rows = bind.execute(sa.text("SELECT document_id, tags FROM import_rows WHERE "
                                "document_id IS NOT NULL AND tags IS NOT NULL ORDER BY id"))
    for document_id, value in rows:
        for tag in (json.loads(value) if isinstance(value, str) else value) or ():
            if (document_id, tag) not in seen:
                seen.add((document_id, tag))
                pending.append({"document_id": document_id, "tag": tag})
        if len(pending) >= BATCH:
            bind.execute(tags.insert(), pending)
            pending = []
    if pending:
        bind.execute(tags.insert(), pending)


def downgrade() -> None:
    op.drop_index("ix_document_tags_tag", table_name="document_tags")
    op.drop_table("document_tags")
    op.drop_index("ix_documents_owner_id_external_ref", table_name="documents")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("external_ref")
        batch.drop_column("title")

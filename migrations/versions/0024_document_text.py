"""Document text (documents/text/): each document's text state, its sealed text, and
the search index: a GIN-indexed tsvector on PostgreSQL, an FTS5 table on SQLite.

Documents already clean keep text_status NULL: nothing reads them again by itself
(`flask documents read-text` queues them).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

COLUMNS = (("text_status", sa.String(20)), ("text_reason", sa.String(50)),
           ("text_characters", sa.Integer()), ("text_pages_ocr", sa.Integer()),
           ("text_ms", sa.Integer()))
# the text rows of the documents the acting owner sees (documents' own policy applies)
POLICY = ("sluice_acting_owner() IS NULL OR EXISTS (SELECT 1 FROM documents "
          "WHERE documents.id = document_texts.document_id)")


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("documents", sa.Column(name, type_, nullable=True))
    # a constant default: PostgreSQL adds the column without rewriting the table
    op.add_column("documents", sa.Column("has_preview", sa.Boolean(),
                                         server_default=sa.false(), nullable=False))
    op.create_table(
        "document_texts",
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("indexed_name", sa.String(600), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], ondelete="CASCADE",
                                name=op.f("fk_document_texts_document_id_documents")),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_document_texts")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE document_texts ADD COLUMN search tsvector")
        op.execute("CREATE INDEX ix_document_texts_search ON document_texts USING gin (search)")
        op.execute("ALTER TABLE document_texts ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE document_texts FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY owner_isolation ON document_texts USING ({POLICY}) "
                   f"WITH CHECK ({POLICY})")
    else:
        # contentless: the index only, no second copy of the text in clear
        op.execute("CREATE VIRTUAL TABLE document_search USING fts5(name, body, content='', "
                   "tokenize='porter unicode61 remove_diacritics 2')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE document_search")
    op.drop_table("document_texts")
    op.drop_column("documents", "has_preview")
    for name, _ in reversed(COLUMNS):
        op.drop_column("documents", name)

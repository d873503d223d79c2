"""Indexes for purge_retention's new sweeps: WhatsApp texts and phones past
RETENTION_MESSAGE_TEXT_DAYS, documents past RETENTION_DOCUMENT_DAYS.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_whatsapp_messages_created_at", "whatsapp_messages", ["created_at"])
    op.create_index("ix_documents_created_at", "documents", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_documents_created_at", table_name="documents")
    op.drop_index("ix_whatsapp_messages_created_at", table_name="whatsapp_messages")

"""WhatsApp media into documents: a row per media item, the message's source, and
WhatsApp events named by their provider (meta, twilio) rather than their source.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("whatsapp_messages", sa.Column("source", sa.String(64), nullable=True))
    op.create_table(
        "whatsapp_media",
        sa.Column("id", ID, nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("wamid", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("media_ref", sa.String(1000), nullable=False),
        sa.Column("mime_type", sa.String(100), nullable=True),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error_code", sa.String(50), nullable=True),
        sa.Column("error_message", sa.String(500), nullable=True),
        sa.Column("document_id", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_media")),
        sa.UniqueConstraint("message_id", "position",
                            name=op.f("uq_whatsapp_media_message_id_position")),
    )
    op.create_index("ix_whatsapp_media_status", "whatsapp_media", ["status"])
    op.create_index("ix_whatsapp_media_document_id", "whatsapp_media", ["document_id"])
    # Until now every WhatsApp source was Meta's, and its events carried the source's
    # name as their provider; the handler now picks the reader by provider.
    op.execute("UPDATE webhook_events SET provider = 'meta' WHERE kind = 'whatsapp'")


def downgrade() -> None:
    op.execute("UPDATE webhook_events SET provider = source WHERE kind = 'whatsapp'")
    op.drop_index("ix_whatsapp_media_document_id", table_name="whatsapp_media")
    op.drop_index("ix_whatsapp_media_status", table_name="whatsapp_media")
    op.drop_table("whatsapp_media")
    with op.batch_alter_table("whatsapp_messages") as batch:
        batch.drop_column("source")

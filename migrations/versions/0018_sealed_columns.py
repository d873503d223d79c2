"""Personal data sealed at rest (store/sealing.py): the sealed columns become text wide
enough for their sealed form, and WhatsApp messages get the blind index of their phone.

Values written before this revision stay readable as they are; `flask keys rotate`
seals them. A downgrade needs every value unsealed first (the event log's data goes
back to JSON): it is for a database that never ran the new code.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("whatsapp_messages") as batch:
        batch.alter_column("phone", type_=sa.Text(), existing_type=sa.String(32))
        batch.add_column(sa.Column("phone_index", sa.String(64), nullable=True))
        batch.create_index("ix_whatsapp_messages_phone_index", ["phone_index"])
    with op.batch_alter_table("destinations") as batch:
        batch.alter_column("secret", type_=sa.Text(), existing_type=sa.String(100))
        batch.alter_column("previous_secret", type_=sa.Text(), existing_type=sa.String(100))
    with op.batch_alter_table("events") as batch:
        batch.alter_column("data", type_=sa.Text(), postgresql_using="data::text",
                           existing_type=sa.JSON().with_variant(postgresql.JSONB(),
                                                                "postgresql"))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.alter_column("data", type_=sa.JSON().with_variant(postgresql.JSONB(),
                                                                "postgresql"),
                           postgresql_using="data::jsonb", existing_type=sa.Text())
    with op.batch_alter_table("destinations") as batch:
        batch.alter_column("previous_secret", type_=sa.String(100), existing_type=sa.Text())
        batch.alter_column("secret", type_=sa.String(100), existing_type=sa.Text())
    with op.batch_alter_table("whatsapp_messages") as batch:
        batch.drop_index("ix_whatsapp_messages_phone_index")
        batch.drop_column("phone_index")
        batch.alter_column("phone", type_=sa.String(32), existing_type=sa.Text())

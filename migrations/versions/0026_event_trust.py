"""webhook_events.trust: how far each stored delivery proves itself (signed, token, or
confirmed by the provider's API). Every event stored before this was verified by a
signature over its content, so the default is also the truth for the rows there.

Adding a column with a constant default rewrites no rows on PostgreSQL 11 and later.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_events", sa.Column("trust", sa.String(12), nullable=False,
                                              server_default="signed"))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("trust")

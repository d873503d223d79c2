"""Drop job_checkpoints: no job ever wrote a checkpoint.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from store.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.drop_table("job_checkpoints")


def downgrade() -> None:
    op.create_table(
        "job_checkpoints",
        sa.Column("job", sa.String(100), nullable=False),
        sa.Column("fence", sa.BigInteger(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_checkpoints")),
    )

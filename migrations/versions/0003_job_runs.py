"""Job run history, fenced job checkpoints, webhook_events.enqueued_at.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from store.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job", sa.String(100), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("fence", sa.BigInteger(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    op.create_index("ix_job_runs_job_started_at", "job_runs", ["job", "started_at"])
    op.create_table(
        "job_checkpoints",
        sa.Column("job", sa.String(100), nullable=False),
        sa.Column("fence", sa.BigInteger(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_checkpoints")),
    )
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("enqueued_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE webhook_events SET enqueued_at = received_at")


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("enqueued_at")
    op.drop_table("job_checkpoints")
    op.drop_index("ix_job_runs_job_started_at", table_name="job_runs")
    op.drop_table("job_runs")

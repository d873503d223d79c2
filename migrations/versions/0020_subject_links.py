"""Data subjects (store/subjects.py): which webhook bodies name whom (by blind index),
which event is about whom, and whether a body's people have been linked yet.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subject_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("subject_index", sa.String(64), nullable=False),
        sa.Column("record_kind", sa.String(32), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_links")),
    )
    op.create_index("ix_subject_links_subject_index", "subject_links", ["subject_index"])
    op.create_index("ux_subject_links_record", "subject_links",
                    ["record_kind", "record_id", "subject_index"], unique=True)
    # a constant default: PostgreSQL adds the column without rewriting the table
    op.add_column("webhook_events", sa.Column("subjects_linked", sa.Boolean(),
                                              server_default=sa.false(), nullable=False))
    op.create_index("ix_webhook_events_unlinked", "webhook_events", ["id"],
                    postgresql_where=sa.text("NOT subjects_linked"),
                    sqlite_where=sa.text("NOT subjects_linked"))
    op.add_column("events", sa.Column("subject_index", sa.String(64), nullable=True))
    op.create_index("ix_events_subject_index", "events", ["subject_index"])


def downgrade() -> None:
    op.drop_index("ix_events_subject_index", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("subject_index")
    op.drop_index("ix_webhook_events_unlinked", table_name="webhook_events")
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("subjects_linked")
    op.drop_index("ux_subject_links_record", table_name="subject_links")
    op.drop_index("ix_subject_links_subject_index", table_name="subject_links")
    op.drop_table("subject_links")

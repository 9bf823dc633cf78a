"""campaign engine

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 06:10:15.527692
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_attempts")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index("ix_attempts_batch", ["batch_id"], unique=False)

    op.create_table(
        "batches",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("activity_id", sa.String(length=32), nullable=False),
        sa.Column("treatment_id", sa.String(length=8), nullable=False),
        sa.Column("endpoint_ids", sa.Text(), nullable=False),
        sa.Column("not_before", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_batches")),
        sa.UniqueConstraint("id", name=op.f("uq_batches_id")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index("ix_batches_run_state", ["run_id", "state"], unique=False)
        batch_op.create_index("ix_batches_activity_state", ["activity_id", "state"], unique=False)
        batch_op.create_index("ix_batches_state_due", ["state", "not_before", "pk"], unique=False)

    op.create_table(
        "outcomes",
        sa.Column("activity_id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_id", sa.String(length=256), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.String(length=32), nullable=True),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("activity_id", "endpoint_id", name=op.f("pk_outcomes")),
    )
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.create_index("ix_outcomes_run", ["run_id", "status"], unique=False)

    op.create_table(
        "runs",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("campaign_version", sa.Integer(), nullable=False),
        sa.Column("scheduled_time", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_runs")),
        sa.UniqueConstraint("id", name=op.f("uq_runs_id")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_campaign", ["app_id", "campaign_id"], unique=False)
        batch_op.create_index("ix_runs_state", ["state"], unique=False)

    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.String(length=32), nullable=True))

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_active", sa.String(length=32), nullable=True))
        batch_op.alter_column("user_id", existing_type=sa.VARCHAR(length=256), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column(
            "request_id", existing_type=sa.VARCHAR(length=256), type_=sa.Text(), existing_nullable=True
        )

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column(
            "event_id", existing_type=sa.VARCHAR(length=256), type_=sa.Text(), existing_nullable=False
        )
        batch_op.alter_column(
            "event_type", existing_type=sa.VARCHAR(length=256), type_=sa.Text(), existing_nullable=False
        )
        batch_op.alter_column(
            "timestamp", existing_type=sa.VARCHAR(length=40), type_=sa.Text(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column(
            "timestamp", existing_type=sa.Text(), type_=sa.VARCHAR(length=40), existing_nullable=False
        )
        batch_op.alter_column(
            "event_type", existing_type=sa.Text(), type_=sa.VARCHAR(length=256), existing_nullable=False
        )
        batch_op.alter_column(
            "event_id", existing_type=sa.Text(), type_=sa.VARCHAR(length=256), existing_nullable=False
        )

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.alter_column(
            "request_id", existing_type=sa.Text(), type_=sa.VARCHAR(length=256), existing_nullable=True
        )
        batch_op.alter_column("user_id", existing_type=sa.Text(), type_=sa.VARCHAR(length=256), existing_nullable=True)
        batch_op.drop_column("last_active")

    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_column("run_id")

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_state")
        batch_op.drop_index("ix_runs_campaign")

    op.drop_table("runs")
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_outcomes_run")

    op.drop_table("outcomes")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index("ix_batches_state_due")
        batch_op.drop_index("ix_batches_activity_state")
        batch_op.drop_index("ix_batches_run_state")

    op.drop_table("batches")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_batch")

    op.drop_table("attempts")

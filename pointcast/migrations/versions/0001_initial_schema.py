"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 05:44:45.905107
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("treatment_id", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column(
            "doc",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_activities")),
        sa.UniqueConstraint("id", name=op.f("uq_activities_id")),
    )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.create_index("ix_activities_campaign", ["app_id", "campaign_id"], unique=False)

    op.create_table(
        "apps",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("creation_date", sa.String(length=32), nullable=False),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_apps")),
        sa.UniqueConstraint("id", name=op.f("uq_apps_id")),
    )
    op.create_table(
        "campaign_versions",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "doc",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("app_id", "campaign_id", "version", name=op.f("pk_campaign_versions")),
    )
    op.create_table(
        "campaigns",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "doc",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("app_id", "id", name=op.f("uq_campaigns_app_id_id")),
    )
    op.create_table(
        "endpoints",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=256), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=True),
        sa.Column("channel_type", sa.String(length=32), nullable=True),
        sa.Column("endpoint_status", sa.String(length=16), nullable=False),
        sa.Column("opt_out", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=256), nullable=True),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "id", name=op.f("pk_endpoints")),
    )
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.create_index("ix_endpoints_app_user", ["app_id", "user_id"], unique=False)

    op.create_table(
        "events",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_id", sa.String(length=256), nullable=False),
        sa.Column("event_id", sa.String(length=256), nullable=False),
        sa.Column("event_type", sa.String(length=256), nullable=False),
        sa.Column("timestamp", sa.String(length=40), nullable=False),
        sa.Column(
            "doc",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_app_endpoint", ["app_id", "endpoint_id"], unique=False)
        batch_op.create_index("ix_events_app_type", ["app_id", "event_type"], unique=False)

    op.create_table(
        "segment_versions",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("segment_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "doc",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("app_id", "segment_id", "version", name=op.f("pk_segment_versions")),
    )
    op.create_table(
        "segments",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "doc",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_segments")),
        sa.UniqueConstraint("app_id", "id", name=op.f("uq_segments_app_id_id")),
    )


def downgrade() -> None:
    op.drop_table("segments")
    op.drop_table("segment_versions")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_app_type")
        batch_op.drop_index("ix_events_app_endpoint")

    op.drop_table("events")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_endpoints_app_user")

    op.drop_table("endpoints")
    op.drop_table("campaigns")
    op.drop_table("campaign_versions")
    op.drop_table("apps")
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index("ix_activities_campaign")

    op.drop_table("activities")

"""Every table pointcast keeps, in one place (the Alembic migrations create them)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = sa.JSON().with_variant(JSONB(), "postgresql")

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("creation_date", sa.String(32), nullable=False),
    sa.Column("settings", Json, nullable=False),
    sa.Column("tags", Json, nullable=False),
)

# One row per endpoint; ``doc`` is the endpoint definition exactly as a campaign payload carries it (JSON text,
# without Id/ApplicationId), so the delivery hot path can splice it into a payload without re-encoding.
endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("app_id", sa.String(32), primary_key=True),
    sa.Column("id", sa.String(256), primary_key=True),
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("channel_type", sa.String(32), nullable=True),
    sa.Column("endpoint_status", sa.String(16), nullable=False),
    sa.Column("opt_out", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(256), nullable=True),
    sa.Column("doc", sa.Text, nullable=False),
    sa.Index("ix_endpoints_app_user", "app_id", "user_id"),
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("id", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("doc", Json, nullable=False),
    sa.UniqueConstraint("app_id", "id"),
)

segment_versions = sa.Table(
    "segment_versions",
    metadata,
    sa.Column("app_id", sa.String(32), primary_key=True),
    sa.Column("segment_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("doc", Json, nullable=False),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("id", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("doc", Json, nullable=False),
    sa.UniqueConstraint("app_id", "id"),
)

campaign_versions = sa.Table(
    "campaign_versions",
    metadata,
    sa.Column("app_id", sa.String(32), primary_key=True),
    sa.Column("campaign_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("doc", Json, nullable=False),
)

# A campaign run (Pinpoint's "activity"): one per treatment per run.
activities = sa.Table(
    "activities",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("campaign_id", sa.String(32), nullable=False),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("treatment_id", sa.String(8), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("doc", Json, nullable=False),
    sa.Index("ix_activities_campaign", "app_id", "campaign_id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("endpoint_id", sa.String(256), nullable=False),
    sa.Column("event_id", sa.String(256), nullable=False),
    sa.Column("event_type", sa.String(256), nullable=False),
    sa.Column("timestamp", sa.String(40), nullable=False),
    sa.Column("doc", Json, nullable=False),
    sa.Index("ix_events_app_endpoint", "app_id", "endpoint_id"),
    sa.Index("ix_events_app_type", "app_id", "event_type"),
)

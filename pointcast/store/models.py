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
    sa.Column("user_id", sa.Text, nullable=True),
    sa.Column("channel_type", sa.String(32), nullable=True),
    sa.Column("endpoint_status", sa.String(16), nullable=False),
    sa.Column("opt_out", sa.String(16), nullable=False),
    sa.Column("request_id", sa.Text, nullable=True),
    sa.Column("doc", sa.Text, nullable=False),
    sa.Column("last_active", sa.String(32), nullable=True),  # newest EffectiveDate or event time (Recency)
    sa.Column("timezone", sa.Text, nullable=True),  # Demographic.Timezone, read by planning (local time, quiet time)
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
    sa.Column("run_id", sa.String(32), nullable=True),
    # Local time over several send times: {send time: how many of the activity's time zones are sent then} (JSON),
    # written when the plan is whole, so that TimezonesCompletedCount counts up as each send time's batches end.
    sa.Column("zone_sends", sa.Text, nullable=True),
    sa.Index("ix_activities_campaign", "app_id", "campaign_id"),
)

# One scheduled occurrence of a campaign. Its plan (batches) is written before anything is sent.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("campaign_id", sa.String(32), nullable=False),
    sa.Column("campaign_version", sa.Integer, nullable=False),
    sa.Column("scheduled_time", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # PLANNING, EXECUTING, COMPLETED
    sa.Column("created", sa.String(32), nullable=False),
    # While PLANNING: where planning got to (JSON: the last endpoint id planned, the part-filled batches, the time
    # zones seen), written with each chunk's batches, so a restart resumes planning instead of starting over. Also,
    # from the first chunk on and after planning too: the application settings the run keeps ("settings": its
    # project-default CampaignHook, QuietTime and Limits as they were when it was first planned).
    sa.Column("plan_state", sa.Text, nullable=True),
    # Why the run ended without planning its audience (its segment cannot be evaluated); its activities FAIL.
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_runs_state", "state"),
    sa.Index("ix_runs_campaign", "app_id", "campaign_id"),
)

# The unit of delivery: at most 50 endpoints of one activity. ``id`` is the idempotency key receivers see.
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("activity_id", sa.String(32), nullable=False),
    sa.Column("treatment_id", sa.String(8), nullable=False),
    sa.Column("endpoint_ids", sa.Text, nullable=False),  # JSON list
    sa.Column("not_before", sa.String(32), nullable=False),  # ISO time: local-time campaigns wait per zone
    sa.Column("state", sa.String(16), nullable=False),  # PENDING, DONE, FAILED
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_batches_run_state", "run_id", "state"),
    sa.Index("ix_batches_activity_state", "activity_id", "state", "not_before"),  # not_before: zones left
    sa.Index("ix_batches_state_due", "state", "not_before", "pk"),
)

# How each targeted endpoint of an activity ended: SENT, SKIPPED, FILTERED or FAILED, with the reason.
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("activity_id", sa.String(32), primary_key=True),
    sa.Column("endpoint_id", sa.String(256), primary_key=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("batch_id", sa.String(32), nullable=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Index("ix_outcomes_run", "run_id", "status"),
)

# Every delivery attempt of a batch, so a user can see why an endpoint failed.
attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(32), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("response", sa.Text, nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),  # a function's attempt: its invocation's request id
    sa.Index("ix_attempts_batch", "batch_id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("endpoint_id", sa.String(256), nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("timestamp", sa.Text, nullable=False),
    sa.Column("doc", Json, nullable=False),
    sa.Index("ix_events_app_endpoint", "app_id", "endpoint_id"),
    sa.Index("ix_events_app_type", "app_id", "event_type"),
)

# Import jobs (CreateImportJob): ``doc`` is the ImportJobResponse as served; the other columns are the job's
# bookkeeping: who runs it (``owner``, a host:pid:nonce token) until when (``lease_until``), and how many records of
# the file are committed (``records_done``), so a job interrupted by a restart resumes where it stopped.
import_jobs = sa.Table(
    "import_jobs",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("segment_id", sa.String(32), nullable=True),  # the segment the job defines, if any
    sa.Column("state", sa.String(16), nullable=False),  # the doc's JobStatus
    sa.Column("owner", sa.String(160), nullable=True),
    sa.Column("lease_until", sa.String(32), nullable=True),
    sa.Column("records_done", sa.Integer, nullable=False, default=0),
    sa.Column("doc", Json, nullable=False),
    sa.Index("ix_import_jobs_app_segment", "app_id", "segment_id"),
    sa.Index("ix_import_jobs_state", "state"),
)

# The endpoints an import job wrote: the members of the segment version that job defines.
import_members = sa.Table(
    "import_members",
    metadata,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("endpoint_id", sa.String(256), primary_key=True),
    sa.Column("app_id", sa.String(32), nullable=False),
)

# Which import job's endpoints each version of an IMPORT segment holds (a version made without an import, such as
# a rename, holds those of the newest version before it that has a row here).
segment_imports = sa.Table(
    "segment_imports",
    metadata,
    sa.Column("app_id", sa.String(32), primary_key=True),
    sa.Column("segment_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.String(32), nullable=False),
)

# Functions (the Lambda API subset). ``doc`` is the FunctionConfiguration as served; ``code`` the zip as uploaded
# (kept in the store so every node of a cluster can unpack it); ``policy`` the resource policy's statements.
functions = sa.Table(
    "functions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("doc", Json, nullable=False),
    sa.Column("code", sa.LargeBinary, nullable=False),
    sa.Column("policy", Json, nullable=False),
    sa.Column("tags", Json, nullable=False),
)

# One row per invocation of a function, whoever asked (the Invoke API, a campaign's channel or hook).
function_invocations = sa.Table(
    "function_invocations",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("function", sa.Text, nullable=False),  # the name, or the ARN of a function pointcast does not host
    sa.Column("kind", sa.String(16), nullable=False),  # Invoke, CHANNEL, FILTER, DELIVERY
    sa.Column("source", sa.Text, nullable=True),  # the campaign ARN that asked, if any
    sa.Column("started", sa.String(32), nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # Success, Unhandled, TimedOut, Refused, Failed
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("logs", sa.Text, nullable=True),
    sa.Index("ix_function_invocations_function", "function", "pk"),
)

"""import jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 06:32:26.688683
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("segment_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=160), nullable=True),
        sa.Column("lease_until", sa.String(length=32), nullable=True),
        sa.Column("records_done", sa.Integer(), nullable=False),
        sa.Column("doc", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_import_jobs")),
        sa.UniqueConstraint("id", name=op.f("uq_import_jobs_id")),
    )
    with op.batch_alter_table("import_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_import_jobs_app_segment", ["app_id", "segment_id"], unique=False)
        batch_op.create_index("ix_import_jobs_state", ["state"], unique=False)

    op.create_table(
        "import_members",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_id", sa.String(length=256), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "endpoint_id", name=op.f("pk_import_members")),
    )
    op.create_table(
        "segment_imports",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("segment_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "segment_id", "version", name=op.f("pk_segment_imports")),
    )


def downgrade() -> None:
    op.drop_table("segment_imports")
    op.drop_table("import_members")
    with op.batch_alter_table("import_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_import_jobs_state")
        batch_op.drop_index("ix_import_jobs_app_segment")

    op.drop_table("import_jobs")

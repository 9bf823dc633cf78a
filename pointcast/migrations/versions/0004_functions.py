"""functions and their invocations

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "functions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("doc", _JSON, nullable=False),
        sa.Column("code", sa.LargeBinary(), nullable=False),
        sa.Column("policy", _JSON, nullable=False),
        sa.Column("tags", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_functions")),
    )
    op.create_table(
        "function_invocations",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("function", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("started", sa.String(length=32), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("logs", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_function_invocations")),
    )
    with op.batch_alter_table("function_invocations", schema=None) as batch_op:
        batch_op.create_index("ix_function_invocations_function", ["function", "pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("function_invocations", schema=None) as batch_op:
        batch_op.drop_index("ix_function_invocations_function")
    op.drop_table("function_invocations")
    op.drop_table("functions")

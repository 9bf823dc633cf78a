"""endpoint time zone: Demographic.Timezone as a column, for planning

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 20:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        zone = "CAST(doc AS JSONB) #>> '{Demographic,Timezone}'"
    else:
        zone = "json_extract(doc, '$.Demographic.Timezone')"
    op.execute(f"UPDATE endpoints SET timezone = {zone} WHERE doc LIKE '%\"Timezone\"%'")


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("timezone")

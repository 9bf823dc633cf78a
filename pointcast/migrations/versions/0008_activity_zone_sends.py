"""activity zone sends: how many time zones each local-time send time holds (TimezonesCompletedCount)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 23:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Activities planned before this column have none: they count their zones when they complete, as before.
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("zone_sends", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_column("zone_sends")

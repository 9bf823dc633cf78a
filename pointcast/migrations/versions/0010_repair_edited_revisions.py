"""repair edited revisions: stores that ran 0002 or 0008 before those were edited get what a fresh store has

Migration 0002 was edited after commits f1a82b1..427ade4 had created stores with it (63878e4 added
batches.treatment_id, batches.not_before and ix_batches_state_due; 706fa2f added ix_batches_activity_state and pk
in ix_batches_state_due), and 0008 after 3df307f had run it (c978dbf added not_before to
ix_batches_activity_state). Such stores are stamped with the revision but lack what the edit added. This migration
looks at the schema itself and adds or rebuilds what differs; on a store that has it all, it does nothing.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 03:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The batches table's columns that old stores may lack, with the value rows written before the column get (no
# pointcast wrote batches before the commit that added these columns, so these are for safety only).
_COLUMNS = [
    (sa.Column("treatment_id", sa.String(length=8), nullable=False), "0"),
    (sa.Column("not_before", sa.String(length=32), nullable=False), "1970-01-01T00:00:00.000Z"),
]
# The batches table's indexes as a fresh store has them.
_INDEXES = {
    "ix_batches_activity_state": ["activity_id", "state", "not_before"],
    "ix_batches_state_due": ["state", "not_before", "pk"],
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {column["name"] for column in inspector.get_columns("batches")}
    missing = [(column, fill) for column, fill in _COLUMNS if column.name not in present]
    if missing:
        with op.batch_alter_table("batches", schema=None) as batch_op:
            for column, fill in missing:
                batch_op.add_column(
                    sa.Column(column.name, column.type, nullable=False, server_default=sa.text(f"'{fill}'"))
                )
        with op.batch_alter_table("batches", schema=None) as batch_op:
            for column, _ in missing:
                batch_op.alter_column(
                    column.name, existing_type=column.type, existing_nullable=False, server_default=None
                )
    indexes = {index["name"]: index["column_names"] for index in sa.inspect(op.get_bind()).get_indexes("batches")}
    for name, columns in _INDEXES.items():
        if indexes.get(name) == columns:
            continue
        if name in indexes:
            op.drop_index(name, table_name="batches")
        op.create_index(name, "batches", columns)


def downgrade() -> None:
    # Nothing to undo: a fresh store at 0009 has all of this already.
    pass

"""endpoints on PostgreSQL: the definition also as jsonb, for segments evaluated in SQL

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 21:00:00.000000

A stored generated column, so every write keeps it and segment conditions read it without parsing the text per
row (parsing it per row made SQL evaluation slower than Python's; see docs/benchmarks.md). SQLite reads the text
with its JSON1 functions, and is left as it is. On an existing store the upgrade rewrites the table once.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE endpoints ADD COLUMN doc_json jsonb GENERATED ALWAYS AS (CAST(doc AS jsonb)) STORED")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE endpoints DROP COLUMN doc_json")

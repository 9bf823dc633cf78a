"""The durable store: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL."""

from pointcast.store.db import Database
from pointcast.store.locks import lock

__all__ = ["Database", "lock"]

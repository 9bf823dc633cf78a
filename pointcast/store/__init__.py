"""The durable store: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL."""

from pointcast.store.db import Database

__all__ = ["Database"]

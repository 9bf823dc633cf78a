"""Serialising read-modify-writes of one API resource across connections and nodes.

A write transaction runs at READ COMMITTED on PostgreSQL: an operation that reads a row, changes it in Python and
writes it back (UpdateEndpoint's merge, a segment's next ``Version``, a function's policy) would lose a concurrent
writer's change. ``lock`` is called first in such a transaction, with every resource it will read and rewrite; on
PostgreSQL it takes a transaction-scoped advisory lock per resource (released at commit or rollback), so writers of
one resource take turns and each reads what the previous one committed. On SQLite it does nothing: writers are
already serialised (``Database.write``).

Locks are taken in one statement, in the order of their 64-bit keys, so two transactions locking overlapping sets
(two UpdateEndpointsBatch calls naming the same ids in opposite orders) queue instead of deadlocking. A transaction
takes all its locks in one ``lock`` call; calling it again with keys it already holds is free (advisory locks are
re-entrant), but with new keys it could deadlock with another transaction's single call.
"""

from __future__ import annotations

import hashlib

import orjson
import sqlalchemy as sa

Key = tuple[str, ...]
"""A resource: its kind, then what names it (``("endpoint", app_id, endpoint_id)``, ``("function", name)``)."""


def lock_id(key: Key) -> int:
    """A stable signed 64-bit number for ``key`` (the same on every node and every run)."""
    digest = hashlib.blake2b(orjson.dumps(list(key)), digest_size=8, person=b"pointcast.lock").digest()
    return int.from_bytes(digest, "big", signed=True)


def lock(conn: sa.Connection, *keys: Key) -> None:
    """Hold each resource in ``keys`` until the transaction ends (PostgreSQL; nothing on SQLite)."""
    if not keys or conn.dialect.name != "postgresql":
        return
    ids = sorted({lock_id(key) for key in keys})
    if len(ids) == 1:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (ids[0],))
        return
    # A function scan returns the array's elements in order: the locks are taken in ascending order.
    conn.exec_driver_sql("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", (ids,))

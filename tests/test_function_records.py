"""Invocation records are kept to the newest POINTCAST_FUNCTION_RECORDS: a server deletes the older ones when it
starts and each minute after (before, every record stayed for ever: some 80 MB per million-endpoint FILTER run)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from pointcast.functions import repository as repo
from pointcast.store import models as m
from tests.conftest import running_server
from tests.support.campaigns import wait_for, write_store

KEEP = 1000


def _records(count: int) -> list[dict[str, object]]:
    return [
        {
            "request_id": f"r{i}",
            "function": "f",
            "kind": "Invoke",
            "source": None,
            "started": "2030-01-01T00:00:00.000Z",
            "duration_ms": 1.0,
            "outcome": "Success",
            "error": None,
            "logs": "x" * 100,
        }
        for i in range(count)
    ]


def _count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(m.function_invocations)).scalar() or 0)


def test_a_server_keeps_only_the_newest_invocation_records(backend: str, tmp_path: Path) -> None:
    with running_server(backend, tmp_path, None, POINTCAST_FUNCTION_RECORDS=str(KEEP)) as server:
        write_store(server, lambda conn: repo.insert_invocations(conn, _records(KEEP + 500)))
        # (the server's own prune at start may come first: then this one finds nothing to do)
        assert write_store(server, lambda conn: repo.prune_invocations(conn, KEEP)) in (0, 500)
        assert write_store(server, _count) == KEEP
        write_store(server, lambda conn: repo.insert_invocations(conn, _records(30)))  # its next is a minute off
        assert write_store(server, lambda conn: repo.prune_invocations(conn, KEEP, at_most=20)) == 20
        assert write_store(server, lambda conn: repo.prune_invocations(conn, KEEP, at_most=20)) == 10
        assert write_store(server, _count) == KEEP
        newest = write_store(server, lambda conn: [r.request_id for r in repo.invocations(conn, "f", 1)])
        assert newest == ["r29"]  # the newest stay

        # A server started on a store holding more deletes the oldest at once.
        server.stop()
        write_store(server, lambda conn: repo.insert_invocations(conn, _records(KEEP)))
        assert write_store(server, _count) == 2 * KEEP
        server.start()
        wait_for(lambda: write_store(server, _count) == KEEP, 10, "the records past the newest 1,000 deleted")
        newest = write_store(server, lambda conn: [r.request_id for r in repo.invocations(conn, "f", 1)])
        assert newest == [f"r{KEEP - 1}"]

"""One engine per store: several servers on one database (a cluster on PostgreSQL) run campaigns once.

Every server serves the API; the campaign engine (``Runner``: scheduling, planning, delivery) runs on one of them
at a time, the holder of the store's engine lock. The others wait as standbys and try for the lock every
``TRY_SECONDS``; when the holder stops or dies, the lock is released (PostgreSQL ends a dead client's session, the
kernel a dead process's file lock) and a standby's engine takes over where the store says the runs are, as a
restarted server's would (the batches that were in flight are sent again: at least once).

The lock: on PostgreSQL a session-level advisory lock on a connection of its own, keyed by the schema, so that
stores in different schemas of one database do not share an engine; on SQLite an exclusive ``flock`` of
``engine.lock`` beside the database file. A holder whose lock connection breaks (the database restarted, the
network) has lost the lock: its engine stops, and it tries again as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pointcast.context import Context
from pointcast.engine.runner import Runner
from pointcast.imports import jobs

log = logging.getLogger("pointcast.engine")

TRY_SECONDS = 1.0  # how often a standby tries for the lock, and the holder checks it still has it
ORPHANS_SECONDS = 30.0  # how often import jobs whose server is gone are looked for (every server)
_KEY = "SELECT pg_try_advisory_lock(hashtext('pointcast.engine:' || current_schema()))"


class _PostgresLock:
    def __init__(self, url: sa.URL | str) -> None:
        # Its own engine without a pool: the lock lives exactly as long as this one connection. TCP keepalives on
        # both sides (the client's here, PostgreSQL's set for the session in ``acquire``): a holder whose host
        # vanished loses its session, and the lock, within half a minute, and a holder notices a vanished database.
        self._engine = sa.create_engine(
            url,
            poolclass=sa.pool.NullPool,
            connect_args={"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3},
        )
        self._conn: sa.Connection | None = None

    def acquire(self) -> bool:
        self.release()
        conn = self._engine.connect()
        try:
            for setting in ("tcp_keepalives_idle = 10", "tcp_keepalives_interval = 5", "tcp_keepalives_count = 3"):
                conn.exec_driver_sql(f"SET {setting}")
            held = bool(conn.exec_driver_sql(_KEY).scalar())
            conn.commit()
        except Exception:
            conn.close()
            raise
        if held:
            self._conn = conn
        else:
            conn.close()
        return held

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.exec_driver_sql("SELECT 1")
            self._conn.commit()
        except Exception:
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # the session ends, and its advisory lock with it
            self._conn = None

    def dispose(self) -> None:
        self.release()
        self._engine.dispose()


class _FileLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1

    def acquire(self) -> bool:
        self.release()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # and the lock with it
            self._fd = -1

    def dispose(self) -> None:
        self.release()


class Engine:
    """The campaign engine of this server when it holds the store's engine lock (``Runner``), else a standby."""

    def __init__(self, ctx: Context, make_runner: Callable[[], Runner]) -> None:
        self.ctx = ctx
        self._make_runner = make_runner
        db = ctx.db
        if db.is_sqlite:
            where = db.sqlite_path
            lock = where.with_name(where.name + ".engine-lock") if where else ctx.settings.data_dir / "engine.lock"
            self._lock: _PostgresLock | _FileLock = _FileLock(lock)
        else:
            self._lock = _PostgresLock(db.engine.url)
        self.runner: Runner | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Try for the lock once now (a lone server runs its engine at once), then keep trying or checking."""
        await self._step()
        self._task = asyncio.create_task(self._loop(), name="pointcast-engine-lock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None
        await asyncio.to_thread(self._lock.dispose)

    async def _loop(self) -> None:
        since_orphans = 0.0
        while True:
            await asyncio.sleep(TRY_SECONDS)
            try:
                await self._step()
            except Exception:
                log.exception("the engine lock could not be checked; trying again")
            since_orphans += TRY_SECONDS
            if since_orphans >= ORPHANS_SECONDS:  # an import job's server may have died: any server takes it over
                since_orphans = 0.0
                with contextlib.suppress(Exception):
                    await jobs.resume_orphans(self.ctx)

    async def _step(self) -> None:
        if self.runner is None:
            if await asyncio.to_thread(self._lock.acquire):
                log.info("this server runs the campaign engine (it holds the store's engine lock)")
                runner = self._make_runner()
                await runner.start()
                self.runner = runner
            return
        if not await asyncio.to_thread(self._lock.held):
            log.error("the store's engine lock was lost (its connection broke); the engine stops and waits for it")
            runner, self.runner = self.runner, None
            await runner.stop()

    def wake(self) -> None:
        if self.runner is not None:
            self.runner.wake()

    def secret_changed(self, app_id: str) -> None:
        if self.runner is not None:
            self.runner.secret_changed(app_id)

    def destinations_down(self) -> list[dict[str, Any]]:
        return self.runner.destinations_down() if self.runner is not None else []

    def status(self) -> dict[str, Any]:
        if self.runner is not None:
            return {"Role": "engine", **self.runner.status()}
        return {"Role": "standby", "Running": False}

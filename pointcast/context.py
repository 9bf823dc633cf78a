"""What every handler gets: settings, the store, and the shared outbound TLS context."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from pointcast.engine.clock import Clock
from pointcast.settings import Settings
from pointcast.store import Database

T = TypeVar("T")


@dataclass(slots=True)
class Context:
    settings: Settings
    db: Database
    ssl_context: ssl.SSLContext = field(default_factory=ssl.create_default_context)
    clock: Clock = field(default_factory=Clock)
    wake_engine: Callable[[], None] = lambda: None  # set by the runner when it runs here
    destinations_down: Callable[[], list[dict[str, Any]]] = list  # the runner's open breakers, when it runs here
    secret_changed: Callable[[str], None] = lambda app_id: None  # the runner drops its copy of the app's secret
    credentials: tuple[str, str] = ("pointcast", "pointcast")  # what functions' boto3 clients sign with
    functions: Any = None  # the FunctionHost, while the server runs

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def account_id(self) -> str:
        return self.settings.account_id

    async def read(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a read transaction on a worker thread (the store is synchronous)."""
        return await run_in_threadpool(self._read, work)

    async def write(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in one write transaction on a worker thread; it commits when ``work`` returns."""
        return await run_in_threadpool(self._write, work)

    def _read(self, work: Callable[[sa.Connection], T]) -> T:
        with self.db.read() as conn:
            return work(conn)

    def _write(self, work: Callable[[sa.Connection], T]) -> T:
        with self.db.write() as conn:
            return work(conn)

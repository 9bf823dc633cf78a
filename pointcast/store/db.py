"""Engine creation and transaction boundaries. The edge (a request, a task) owns the transaction."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def storable(text: str | None) -> str | None:
    """``text`` as a text column of either store can hold it: PostgreSQL refuses NUL in text, so a NUL (from a
    function's error message or log, a webhook's answer) becomes U+FFFD, on SQLite too, so both stores keep the same."""
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an unexpected error, for a reason a user reads: a database error is the driver's own
    (its first line), without the SQL statement and parameters SQLAlchemy wraps it in."""
    if isinstance(exc, sa.exc.StatementError) and exc.orig is not None:
        exc = exc.orig
    first = str(exc).strip().splitlines()
    return storable(f"{type(exc).__name__}: {first[0] if first else ''}") or ""


class Database:
    """The store's engine plus ``read()``/``write()`` transactions.

    SQLite allows one writer at a time; rather than letting threads spin in SQLite's busy handler, writers queue
    on a process-wide lock (readers are never blocked, thanks to WAL).
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        path = url.removeprefix("sqlite:///") if self.is_sqlite else ""
        self.sqlite_path = Path(path) if path and path != ":memory:" else None  # the database file, if one
        kwargs: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
        if self.is_sqlite:
            if self.sqlite_path is not None:
                self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):  # not ours to change: SQLite says what it cannot do
                    _owner_only(self.sqlite_path)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 16
        else:
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            kwargs["pool_pre_ping"] = True
        self.engine = sa.create_engine(url, echo=echo, **kwargs)
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_on_connect)
            sa.event.listen(self.engine, "begin", _sqlite_on_begin)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if not self.is_sqlite:
                # Several API nodes may start at once: one migrates, the others wait for it.
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(720011)")
            config.attributes["connection"] = connection
            known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
            for revision in MigrationContext.configure(connection).get_current_heads():
                if revision not in known:  # Alembic would say only "Can't locate revision identified by ..."
                    raise RuntimeError(
                        f"this store was written by a newer version of pointcast (revision {revision}); "
                        "run that version or newer"
                    )
            command.upgrade(config, "head")

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as connection:
            yield connection
            connection.rollback()

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        if self._write_lock is None:
            with self.engine.begin() as connection:
                yield connection
            return
        with self._write_lock, self.engine.connect() as connection:
            # BEGIN IMMEDIATE: take SQLite's write lock first (waiting in the busy handler), so that a write
            # transaction never fails to upgrade a read because another process (the planner) wrote meanwhile.
            connection.execution_options(pointcast_write=True)
            with connection.begin():
                yield connection

    def dispose(self) -> None:
        self.engine.dispose()


def _owner_only(path: Path) -> None:
    """The SQLite file readable by its owner only (it holds webhook secrets and functions' environments); SQLite
    gives its -wal and -shm files the database file's mode."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for companion in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy (not the sqlite3 module) decide where transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(connection: sa.Connection) -> None:
    immediate = connection.get_execution_options().get("pointcast_write")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

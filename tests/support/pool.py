"""The function worker pool in a test: real worker processes, a spec per function, a bounded event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from textwrap import dedent
from typing import Any, TypeVar

from pointcast.functions.runtime import FunctionSpec, WorkerPool

T = TypeVar("T")
ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended: only its exit status is left)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def run(make: Callable[[], Awaitable[T]], limit: float = 60.0) -> T:
    """``make()`` on a fresh event loop, bounded by ``limit`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(make(), limit)

    return asyncio.run(bounded())


@asynccontextmanager
async def running_pool(tmp_path: Path, base_env: dict[str, str], **options: Any) -> AsyncIterator[WorkerPool]:
    """A started pool working under ``tmp_path``, stopped (its workers with it) on the way out."""
    pool = WorkerPool(work_dir=tmp_path / "pool", base_env=base_env, **options)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


def function(
    tmp_path: Path,
    name: str,
    source: str,
    *,
    runtime: str = "python3.12",
    filename: str = "index.py",
    handler: str = "index.handler",
    **overrides: Any,
) -> FunctionSpec:
    """A function whose code is ``source`` (as ``filename``), with the pool's usual limits unless overridden."""
    code = tmp_path / "code" / name
    code.mkdir(parents=True, exist_ok=True)
    (code / filename).write_text(dedent(source))
    fields: dict[str, Any] = {
        "name": name,
        "arn": ARN.format(name),
        "revision": "r1",
        "runtime": runtime,
        "handler": handler,
        "code_dir": code,
        "environment": {},
        "timeout": 5.0,
        "memory_mb": 128,
        "concurrency": 2,
    }
    fields.update(overrides)
    return FunctionSpec(**fields)

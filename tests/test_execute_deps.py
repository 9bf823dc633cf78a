"""ExecuteDeps reads what a run's batches share (its spec, the project's secret) once, however many start at once.

The store is stood in for by ExecuteDeps' own injected ``read`` (a coroutine running work on a connection)."""

from __future__ import annotations

import asyncio
from typing import Any

from pointcast.engine.execute import ExecuteDeps


class CountingStore:
    """Stands in for the store's worker-thread read: counts reads, answers after a pause, can fail once."""

    def __init__(self, answer: Any, fail_first: bool = False) -> None:
        self.answer = answer
        self.reads = 0
        self.fail_first = fail_first

    async def read(self, work: Any) -> Any:
        self.reads += 1
        await asyncio.sleep(0.01)
        if self.fail_first and self.reads == 1:
            raise RuntimeError("store unavailable")
        return work(None)


def deps(store: CountingStore) -> ExecuteDeps:
    return ExecuteDeps(store.read, store.read, None, None, None)  # type: ignore[arg-type]


def load(conn: Any) -> str:
    return "spec"


def test_batches_starting_together_read_once() -> None:
    store = CountingStore(None)
    d = deps(store)

    async def main() -> list[Any]:
        together = await asyncio.gather(*(d._once(("spec", "run-1"), load) for _ in range(64)))
        other = await d._once(("spec", "run-2"), load)
        return [*together, other]

    assert asyncio.run(main()) == ["spec"] * 65
    assert store.reads == 2  # run-1 once for its 64 batches, run-2 once
    assert d.loading == {}


def test_a_failed_read_is_not_kept() -> None:
    store = CountingStore(None, fail_first=True)
    d = deps(store)

    async def main() -> tuple[list[Any], Any]:
        first = await asyncio.gather(*(d._once(("spec", "run-1"), load) for _ in range(8)), return_exceptions=True)
        return first, await d._once(("spec", "run-1"), load)

    first, again = asyncio.run(main())
    assert all(isinstance(result, RuntimeError) for result in first)
    assert again == "spec" and store.reads == 2

"""The runner's read-ahead: batches ready to deliver, queued per run, that the runs take turns to start.

A run whose next batch may not start yet (its ``MessagesPerSecond`` pace, its webhook's open circuit breaker) is
passed over, and its batches wait here, holding no delivery slot, so they hold no other run back. Within a run,
batches start in the order they came (due time, then planning order). A run that was told to wait is not asked
again before then, unless ``wake()`` says something changed (a breaker closed): however many runs wait, starting a
batch of another one costs a dict lookup per waiting run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Iterator

from pointcast.engine.plan import Prepared


class ReadAhead:
    def __init__(self) -> None:
        self._runs: dict[str, deque[Prepared]] = {}  # in turn order: the run that started a batch last goes last
        self._count = 0
        self._resting: dict[str, float] = {}  # run id -> monotonic time before which it is not asked again

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Prepared]:
        for queue in self._runs.values():
            yield from queue

    def ids(self) -> set[str]:
        return {item.batch.id for item in self}

    def queued(self, run_id: str) -> int:
        queue = self._runs.get(run_id)
        return len(queue) if queue else 0

    def runs(self) -> list[str]:
        return list(self._runs)

    def add(self, item: Prepared) -> None:
        queue = self._runs.get(item.batch.run_id)
        if queue is None:
            queue = self._runs[item.batch.run_id] = deque()
        queue.append(item)
        self._count += 1

    def wake(self) -> None:
        """Something a waiting run waits for changed: ask them all again."""
        self._resting.clear()

    def _wait(self, run_id: str, queue: deque[Prepared], hold: Callable[[Prepared], float], now: float) -> float:
        resting = self._resting.get(run_id)
        if resting is not None:
            if resting > now:
                return resting - now
            del self._resting[run_id]
        seconds = hold(queue[0])
        if seconds > 0:
            self._resting[run_id] = now + seconds
        return seconds

    def startable(self, hold: Callable[[Prepared], float]) -> int:
        """How many batches belong to runs whose next batch may start now."""
        now = time.monotonic()
        return sum(len(queue) for run_id, queue in self._runs.items() if self._wait(run_id, queue, hold, now) <= 0)

    def _next(
        self, hold: Callable[[Prepared], float], exclude: Collection[str] = ()
    ) -> tuple[str | None, float | None]:
        """The first run in turn (not in ``exclude``) whose next batch may start now; else None and the seconds until
        the first may go (None if nothing is queued)."""
        wait: float | None = None
        now = time.monotonic()
        for run_id, queue in self._runs.items():
            if run_id in exclude:
                continue
            seconds = self._wait(run_id, queue, hold, now)
            if seconds <= 0:
                return run_id, None
            wait = seconds if wait is None else min(wait, seconds)
        return None, wait

    def next_run(self, hold: Callable[[Prepared], float], exclude: Collection[str] = ()) -> str | None:
        """The run whose batch ``take`` would start now, if any (passing over the runs in ``exclude``)."""
        return self._next(hold, exclude)[0]

    def take(self, hold: Callable[[Prepared], float], run_id: str | None = None) -> Prepared | float | None:
        """The next batch to start, from the first run in turn whose next batch ``hold`` lets start now (0 seconds),
        or from ``run_id`` (one ``next_run`` just named); that run's turn then goes to the back. If every run must
        wait: the seconds until the first may go. If nothing is queued: None."""
        wait = None
        if run_id is None or run_id not in self._runs:
            run_id, wait = self._next(hold)
        if run_id is None:
            return wait
        queue = self._runs.pop(run_id)
        item = queue.popleft()
        self._count -= 1
        if queue:
            self._runs[run_id] = queue  # to the back of the turns
        else:
            self._resting.pop(run_id, None)
        return item

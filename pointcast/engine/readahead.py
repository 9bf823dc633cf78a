"""The runner's read-ahead: batches ready to deliver, queued per run, that the runs take turns to start.

A run whose next batch may not start yet (its ``MessagesPerSecond`` pace, its webhook's open circuit breaker) is
passed over, and its batches wait here, holding no delivery slot, so they hold no other run back. Within a run, each
treatment's batches queue apart (a lane), and the lanes take turns too: a treatment whose webhook is down does not
hold back another treatment of the same campaign that delivers elsewhere. Within a lane, batches start in the order
they came (due time, then planning order). A lane that was told to wait is not asked again before then, unless
``wake()`` says something changed (a breaker closed): however many wait, starting a batch of another run costs a
dict lookup per waiting lane.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Iterator

from pointcast.engine.plan import Prepared

Hold = Callable[[Prepared], float]
Lane = tuple[str, str]  # (run id, treatment id)


def lane_of(item: Prepared) -> Lane:
    return item.batch.run_id, item.batch.treatment_id


class ReadAhead:
    def __init__(self) -> None:
        # run id -> treatment id -> batches; runs and each run's lanes in turn order (the one that started a batch
        # last goes last)
        self._runs: dict[str, dict[str, deque[Prepared]]] = {}
        self._count = 0
        self._resting: dict[Lane, float] = {}  # monotonic time before the lane is asked again

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Prepared]:
        for lanes in self._runs.values():
            for queue in lanes.values():
                yield from queue

    def ids(self) -> set[str]:
        return {item.batch.id for item in self}

    def queued(self, run_id: str, unless: Callable[[Lane], bool] | None = None) -> int:
        """The run's batches queued here (but for those in the lanes ``unless`` names)."""
        lanes = self._runs.get(run_id, {})
        return sum(len(q) for t, q in lanes.items() if unless is None or not unless((run_id, t)))

    def in_lane(self, lane: Lane) -> int:
        return len(self._runs.get(lane[0], {}).get(lane[1], ()))

    def runs(self) -> list[str]:
        return list(self._runs)

    def lanes(self) -> list[Lane]:
        return [(run_id, treatment) for run_id, lanes in self._runs.items() for treatment in lanes]

    def add(self, item: Prepared) -> None:
        run_id = item.batch.run_id
        lanes = self._runs.setdefault(run_id, {})
        lanes.setdefault(item.batch.treatment_id, deque()).append(item)
        self._count += 1

    def drop_run(self, run_id: str) -> int:
        """Forget the run's queued batches (its campaign was deleted); how many there were."""
        dropped = sum(len(queue) for queue in self._runs.pop(run_id, {}).values())
        self._count -= dropped
        for lane in [lane for lane in self._resting if lane[0] == run_id]:
            del self._resting[lane]
        return dropped

    def wake(self) -> None:
        """Something a waiting lane waits for changed: ask them all again."""
        self._resting.clear()

    def _wait(self, key: Lane, queue: deque[Prepared], hold: Hold, now: float) -> float:
        resting = self._resting.get(key)
        if resting is not None:
            if resting > now:
                return resting - now
            del self._resting[key]
        seconds = hold(queue[0])
        if seconds > 0:
            self._resting[key] = now + seconds
        return seconds

    def startable(self, hold: Hold) -> int:
        """How many batches are in lanes whose next batch may start now."""
        now = time.monotonic()
        return sum(len(queue) for key, queue in self._queues() if self._wait(key, queue, hold, now) <= 0)

    def _queues(self, only: Lane | None = None) -> Iterator[tuple[Lane, deque[Prepared]]]:
        """Every lane in turn (runs in turn, then each run's lanes), or only ``only`` if it has batches."""
        if only is None:
            for run_id, lanes in self._runs.items():
                for treatment, queue in lanes.items():
                    yield (run_id, treatment), queue
        elif found := self._runs.get(only[0], {}).get(only[1]):
            yield only, found

    def _next(
        self,
        hold: Hold,
        exclude: Collection[Lane] = (),
        only: Lane | None = None,
        runs_passed_over: Collection[str] = (),
    ) -> tuple[Lane | None, float | None]:
        """The first lane in turn (not in ``exclude``, not of a run in ``runs_passed_over``; ``only``, if given) whose
        next batch may start now; else None and the seconds until the first may go (None if nothing is queued)."""
        wait: float | None = None
        now = time.monotonic()
        for key, queue in self._queues(only):
            if key in exclude or key[0] in runs_passed_over:
                continue
            seconds = self._wait(key, queue, hold, now)
            if seconds <= 0:
                return key, None
            wait = seconds if wait is None else min(wait, seconds)
        return None, wait

    def next_lane(self, hold: Hold, exclude: Collection[Lane] = ()) -> Lane | None:
        """The lane whose batch ``take`` would start now, if any (passing over the lanes in ``exclude``)."""
        return self._next(hold, exclude)[0]

    def take(
        self, hold: Hold, lane: Lane | None = None, runs_passed_over: Collection[str] = ()
    ) -> Prepared | float | None:
        """The next batch to start, from the first lane in turn whose next batch ``hold`` lets start now (0 seconds),
        or from ``lane`` if it may (``next_lane`` just named it); that lane's and its run's turns then go to the
        back. If every lane must wait: the seconds until the first may go. If nothing is queued: None. The runs in
        ``runs_passed_over`` start nothing unless no other run's batch may start now."""
        key = self._next(hold, only=lane)[0] if lane is not None else None
        wait = None
        if key is None and runs_passed_over:
            key = self._next(hold, runs_passed_over=runs_passed_over)[0]
        if key is None:
            key, wait = self._next(hold)
        if key is None:
            return wait
        run_id, treatment = key
        lanes = self._runs.pop(run_id)
        queue = lanes.pop(treatment)
        item = queue.popleft()
        self._count -= 1
        if queue:
            lanes[treatment] = queue  # to the back of the run's lanes
        else:
            self._resting.pop(key, None)
        if lanes:
            self._runs[run_id] = lanes  # to the back of the turns
        return item

"""The runner's read-ahead on its own: runs take turns, a held run is passed over, and says how long to wait."""

from __future__ import annotations

from pointcast.engine.plan import BatchRow, Prepared
from pointcast.engine.readahead import ReadAhead


def item(run_id: str, number: int) -> Prepared:
    batch = BatchRow(f"{run_id}-{number}", run_id, "activity", "0", "2030-01-01T00:00:00.000Z", 0, "app")
    return Prepared(batch, [f"ep-{number}"], {})


def drain(ahead: ReadAhead, hold=lambda _: 0.0) -> list[str]:
    taken = []
    while isinstance(got := ahead.take(hold), Prepared):
        taken.append(got.batch.id)
    return taken


def test_runs_take_turns_and_keep_their_order() -> None:
    ahead = ReadAhead()
    for number in range(4):
        ahead.add(item("big", number))
    ahead.add(item("small", 0))
    ahead.add(item("big", 4))
    assert len(ahead) == 6 and ahead.queued("big") == 5 and ahead.runs() == ["big", "small"]
    assert drain(ahead) == ["big-0", "small-0", "big-1", "big-2", "big-3", "big-4"]
    assert len(ahead) == 0 and ahead.take(lambda _: 0.0) is None and ahead.ids() == set()


def test_a_held_run_is_passed_over_and_the_shortest_wait_is_told() -> None:
    ahead = ReadAhead()
    for number in range(3):
        ahead.add(item("paced", number))
        ahead.add(item("down", number))
    ahead.add(item("free", 0))
    waits = {"paced": 0.5, "down": 2.0, "free": 0.0}

    def hold(it: Prepared) -> float:
        return waits[it.batch.run_id]

    assert ahead.startable(hold) == 1
    assert drain(ahead, hold) == ["free-0"]
    assert 0.4 < ahead.take(hold) <= 0.5  # nothing may start: the paced run may in half a second
    waits["paced"] = 0.0
    assert ahead.take(hold) < 0.5  # not asked again before its time
    ahead.wake()
    assert isinstance(got := ahead.take(hold), Prepared) and got.batch.id == "paced-0"
    assert ahead.startable(hold) == 2 and len(ahead) == 5
    assert ahead.ids() == {"paced-1", "paced-2", "down-0", "down-1", "down-2"}


def test_a_waiting_run_is_not_asked_again_before_its_time_unless_woken() -> None:
    ahead = ReadAhead()
    for run_id in ("down-1", "down-2", "free"):
        for number in range(3):
            ahead.add(item(run_id, number))
    asked: list[str] = []

    def hold(it: Prepared) -> float:
        asked.append(it.batch.run_id)
        return 0.0 if it.batch.run_id == "free" else 60.0

    assert drain(ahead, hold) == ["free-0", "free-1", "free-2"]
    assert asked.count("down-1") == 1 and asked.count("down-2") == 1  # asked once, then left to rest
    wait = ahead.take(hold)
    assert isinstance(wait, float) and 59 < wait <= 60 and len(asked) == 5
    ahead.wake()  # say, their destination's breaker closed
    assert ahead.take(hold) == 60.0 and asked[-2:] == ["down-1", "down-2"]


def test_the_run_a_slot_is_lent_to_is_the_one_that_starts() -> None:
    """The runner lends a waiting batch's slot to another run than the lender's: ``next_run`` passes over the runs
    it is told to, and ``take`` starts a batch of the run it names, whose turn then goes to the back."""
    ahead = ReadAhead()
    for number in range(2):
        ahead.add(item("lender", number))
    ahead.add(item("other", 0))
    ahead.add(item("third", 0))
    free = lambda _: 0.0  # noqa: E731
    assert ahead.next_run(free) == "lender"
    assert ahead.next_run(free, exclude={"lender"}) == "other"
    assert ahead.next_run(free, exclude={"lender", "other", "third"}) is None
    got = ahead.take(free, "other")
    assert isinstance(got, Prepared) and got.batch.id == "other-0"
    assert drain(ahead) == ["lender-0", "third-0", "lender-1"]
    ahead.add(item("late", 0))
    got = ahead.take(free, "gone")  # a run with nothing queued: the first in turn, as without a name
    assert isinstance(got, Prepared) and got.batch.id == "late-0"

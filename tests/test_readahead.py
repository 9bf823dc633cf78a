"""The runner's read-ahead on its own: runs take turns, a held run is passed over, and says how long to wait."""

from __future__ import annotations

from pointcast.engine.plan import BatchRow, Prepared
from pointcast.engine.readahead import ReadAhead


def item(run_id: str, number: int, treatment: str = "0") -> Prepared:
    batch_id = f"{run_id}-{number}" if treatment == "0" else f"{run_id}-{treatment}-{number}"
    batch = BatchRow(batch_id, run_id, "activity", treatment, "2030-01-01T00:00:00.000Z", 0, "app")
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


def test_the_lane_a_slot_is_lent_to_is_the_one_that_starts() -> None:
    """The runner lends a waiting batch's slot to another lane than the lender's: ``next_lane`` passes over the lanes
    it is told to, and ``take`` starts a batch of the lane it names, whose turn then goes to the back."""
    ahead = ReadAhead()
    for number in range(2):
        ahead.add(item("lender", number))
    ahead.add(item("other", 0))
    ahead.add(item("third", 0))
    free = lambda _: 0.0  # noqa: E731
    assert ahead.next_lane(free) == ("lender", "0")
    assert ahead.next_lane(free, exclude={("lender", "0")}) == ("other", "0")
    assert ahead.next_lane(free, exclude={("lender", "0"), ("other", "0"), ("third", "0")}) is None
    got = ahead.take(free, ("other", "0"))
    assert isinstance(got, Prepared) and got.batch.id == "other-0"
    assert drain(ahead) == ["lender-0", "third-0", "lender-1"]
    ahead.add(item("late", 0))
    got = ahead.take(free, ("gone", "0"))  # a lane with nothing queued: the first in turn, as without a name
    assert isinstance(got, Prepared) and got.batch.id == "late-0"


def test_a_held_treatment_does_not_hold_the_others_of_its_run() -> None:
    """Treatment 0 of the A/B run delivers to a webhook that is down; treatment 1 elsewhere. Its batches go on, and
    the run's turns stay one per round beside another run, however many treatments it has."""
    ahead = ReadAhead()
    for number in range(3):
        ahead.add(item("ab", number, "0"))
        ahead.add(item("ab", number, "1"))
    for number in range(2):
        ahead.add(item("plain", number))

    def hold(it: Prepared) -> float:
        return 30.0 if (it.batch.run_id, it.batch.treatment_id) == ("ab", "0") else 0.0

    assert ahead.queued("ab") == 6 and ahead.startable(hold) == 5
    assert ahead.queued("ab", unless=lambda lane: lane == ("ab", "0")) == 3  # what the run's planning waits on
    assert ahead.in_lane(("ab", "0")) == 3 and ahead.in_lane(("ab", "7")) == ahead.in_lane(("none", "0")) == 0
    assert ahead.lanes() == [("ab", "0"), ("ab", "1"), ("plain", "0")]
    assert drain(ahead, hold) == ["ab-1-0", "plain-0", "ab-1-1", "plain-1", "ab-1-2"]
    assert ahead.queued("ab") == 3 and ahead.runs() == ["ab"]
    wait = ahead.take(hold)
    assert isinstance(wait, float) and 29 < wait <= 30
    again = ahead.take(hold, ("ab", "0"))  # named or not, it must wait
    assert ahead.next_lane(hold) is None and isinstance(again, float) and 29 < again <= wait


def test_the_lanes_of_a_run_take_turns() -> None:
    ahead = ReadAhead()
    for number in range(2):
        for treatment in ("0", "1", "2"):
            ahead.add(item("ab", number, treatment))
    assert drain(ahead) == ["ab-0", "ab-1-0", "ab-2-0", "ab-1", "ab-1-1", "ab-2-1"]
    assert ahead.queued("ab") == 0 and len(ahead) == 0

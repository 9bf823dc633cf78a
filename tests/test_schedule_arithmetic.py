"""engine.schedule finds a campaign's due occurrence by arithmetic; it must agree with walking the occurrences one by
one (the reference below, how it was done before), and it must not stop at any number of occurrences."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pointcast.engine import schedule

BASE = datetime(2030, 1, 31, 9, 0, tzinfo=UTC)


def walk(sched: dict[str, Any], written: datetime) -> Iterator[datetime]:
    """Every occurrence in order, one at a time (the reference)."""
    start = written if sched["StartTime"] == "IMMEDIATE" else schedule.parse_time(sched["StartTime"])
    end = schedule.parse_time(sched["EndTime"]) if sched.get("EndTime") else None
    frequency = sched.get("Frequency", "ONCE")
    if frequency in schedule.ONE_TIME:
        if frequency == "ONCE" and (end is None or start < end):
            yield start
        return
    # Local time, by the day, week or month: steps on Schedule.Timezone's wall clock (09:00 stays 09:00).
    wall = schedule.zone(sched.get("Timezone")) if sched.get("IsLocalTime") and frequency != "HOURLY" else None
    first = start if wall is None else start.astimezone(wall).replace(tzinfo=None)
    index = 0
    while True:
        moment = (
            schedule._add_months(first, index)
            if frequency == "MONTHLY"
            else first + schedule.PERIODS[frequency] * index
        )
        if wall is not None:
            moment = moment.replace(tzinfo=wall).astimezone(UTC)
        if end is not None and moment >= end:
            return
        yield moment
        index += 1


def reference_due(sched: dict[str, Any], written: datetime, last_run: datetime | None, now: datetime) -> Any:
    """The latest occurrence due after ``last_run``; with local time (recurring) the earliest one due after it whose
    next occurrence has not reached every zone (UTC-12 is the last), so each zone gets its latest due one."""
    due = []
    for moment in walk(sched, written):
        if schedule.earliest_send(moment, sched) > now:
            break
        if last_run is None or moment > last_run:
            due.append(moment)
    if not due:
        return None
    if not sched.get("IsLocalTime") or sched["Frequency"] in schedule.ONE_TIME:
        return due[-1]
    nexts = [*due[1:], None]
    return next(m for m, after in zip(due, nexts, strict=True) if after is None or latest(after, sched) > now)


def latest(moment: datetime, sched: dict[str, Any]) -> datetime:
    return schedule.local_send_time(moment, sched, "UTC-12")


def reference_finished(sched: dict[str, Any], written: datetime, last_run: datetime | None) -> bool:
    return all(last_run is not None and moment <= last_run for moment in walk(sched, written))


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


schedules = st.fixed_dictionaries(
    {
        "start": st.integers(min_value=-400, max_value=400),  # hours from BASE
        "length": st.integers(min_value=1, max_value=3000),  # hours to EndTime
        "frequency": st.sampled_from(["ONCE", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "EVENT"]),
        "local": st.booleans(),
        "zone": st.sampled_from([None, "UTC", "UTC+14", "UTC-12", "America/New_York", "Asia/Kolkata"]),
        "immediate": st.booleans(),
    }
)


@settings(max_examples=400, deadline=None)
@given(
    spec=schedules,
    now_hours=st.integers(min_value=-500, max_value=4000),
    last_hours=st.one_of(st.none(), st.integers(min_value=-500, max_value=4000)),
)
def test_due_and_finished_agree_with_walking_every_occurrence(spec, now_hours, last_hours) -> None:
    start = BASE + timedelta(hours=spec["start"])
    sched: dict[str, Any] = {
        "StartTime": "IMMEDIATE" if spec["immediate"] else iso(start),
        "EndTime": iso(start + timedelta(hours=spec["length"])),
        "Frequency": spec["frequency"],
    }
    if spec["local"]:
        sched["IsLocalTime"] = True
    if spec["zone"]:
        sched["Timezone"] = spec["zone"]
    written = start  # an IMMEDIATE campaign starts when it was written
    now = BASE + timedelta(hours=now_hours)
    last = None if last_hours is None else BASE + timedelta(hours=last_hours)
    assert schedule.due(sched, written, last, now) == reference_due(sched, written, last, now)
    assert schedule.finished(sched, written, last) == reference_finished(sched, written, last)


def test_an_hourly_campaign_of_a_century_runs_its_latest_occurrence_and_is_not_finished() -> None:
    """Before, occurrences stopped at 100,000 (11.4 years of hours): the run was 2021's and the campaign ended."""
    sched = {"StartTime": "2010-01-01T00:00:00Z", "EndTime": "2100-01-01T00:00:00Z", "Frequency": "HOURLY"}
    now = datetime(2026, 11, 24, 18, 30, tzinfo=UTC)
    written = datetime(2009, 12, 1, tzinfo=UTC)
    assert schedule.due(sched, written, None, now) == datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
    assert not schedule.finished(sched, written, datetime(2026, 11, 24, 18, 0, tzinfo=UTC))
    last = datetime(2099, 12, 31, 23, 0, tzinfo=UTC)
    assert schedule.finished(sched, written, last)
    assert schedule.due(sched, written, last, datetime(2200, 1, 1, tzinfo=UTC)) is None


def test_monthly_occurrences_clamp_to_short_months_and_come_back() -> None:
    sched = {"StartTime": "2030-01-31T09:00:00Z", "EndTime": "2031-01-01T00:00:00Z", "Frequency": "MONTHLY"}
    due = schedule.due(sched, BASE, None, datetime(2030, 3, 30, tzinfo=UTC))
    assert due == datetime(2030, 2, 28, 9, 0, tzinfo=UTC)
    due = schedule.due(sched, BASE, None, datetime(2030, 3, 31, 9, 0, tzinfo=UTC))
    assert due == datetime(2030, 3, 31, 9, 0, tzinfo=UTC)


def test_a_start_time_with_microseconds_runs_once() -> None:
    """Runs keep their time to the millisecond; a StartTime from Python's isoformat() has microseconds, and it ran
    again at every tick (its occurrence was always later than the run that had already sent it)."""
    sched = {"StartTime": "2030-01-31T09:00:00.306142+00:00"}
    now = datetime(2030, 1, 31, 9, 0, 1, tzinfo=UTC)
    due = schedule.due(sched, BASE, None, now)
    assert due == datetime(2030, 1, 31, 9, 0, 0, 306000, tzinfo=UTC)
    ran = schedule.parse_time("2030-01-31T09:00:00.306Z")  # as the run stores it (iso_ms)
    assert schedule.due(sched, BASE, ran, now) is None and schedule.finished(sched, BASE, ran)
    hourly = {**sched, "Frequency": "HOURLY", "EndTime": "2030-01-31T12:00:00Z"}
    assert schedule.due(hourly, BASE, ran, now) is None


def test_quiet_time_includes_its_start_and_its_end_minute() -> None:
    """botocore's model: quiet when local time is later than or equal to Start and earlier than or equal to End."""
    from pointcast.engine.schedule import in_quiet_time

    night = {"Start": "22:00", "End": "08:00"}
    day = {"Start": "12:00", "End": "13:30"}

    def at(text: str) -> datetime:
        return datetime.fromisoformat(f"2031-01-05T{text}+00:00")

    assert in_quiet_time(at("22:00:00"), night, "UTC") and in_quiet_time(at("08:00:00"), night, "UTC")
    assert in_quiet_time(at("08:00:59"), night, "UTC") and not in_quiet_time(at("08:01:00"), night, "UTC")
    assert not in_quiet_time(at("21:59:59"), night, "UTC") and in_quiet_time(at("03:00:00"), night, "UTC")
    assert in_quiet_time(at("12:00:00"), day, "UTC") and in_quiet_time(at("13:30:30"), day, "UTC")
    assert not in_quiet_time(at("13:31:00"), day, "UTC") and not in_quiet_time(at("11:59:59"), day, "UTC")


def test_a_daily_local_time_campaign_in_an_iana_zone_keeps_its_wall_time_across_daylight_saving() -> None:
    """09:00 in New York stays 09:00: 14:00Z in winter, 13:00Z from the second Sunday of March (EDT), 14:00Z again
    from the first Sunday of November. Stepped in UTC it became 10:00 for the summer."""
    sched = {"StartTime": "2030-03-08T14:00:00Z", "EndTime": "2030-11-06T00:00:00Z", "Frequency": "DAILY",
             "IsLocalTime": True, "Timezone": "America/New_York"}  # fmt: skip
    moments = list(schedule.occurrences(sched, BASE))
    new_york = schedule.zone("America/New_York")
    assert {(m.astimezone(new_york).hour, m.astimezone(new_york).minute) for m in moments} == {(9, 0)}
    assert moments[:4] == [datetime(2030, 3, d, h, tzinfo=UTC) for d, h in ((8, 14), (9, 14), (10, 13), (11, 13))]
    assert moments[-4:] == [datetime(2030, 11, d, h, tzinfo=UTC) for d, h in ((2, 13), (3, 14), (4, 14), (5, 14))]
    assert len(moments) == 243  # every day, none twice or lost at either change
    # The 10th's run starts when 09:00 comes to UTC+14 (19:00Z on the 9th), and sends to New York at 13:00Z.
    assert schedule.due(sched, BASE, moments[0], datetime(2030, 3, 9, 18, 59, tzinfo=UTC)) == moments[1]
    assert schedule.due(sched, BASE, moments[1], datetime(2030, 3, 9, 18, 59, tzinfo=UTC)) is None
    assert schedule.due(sched, BASE, moments[1], datetime(2030, 3, 9, 19, 0, tzinfo=UTC)) == moments[2]
    assert schedule.local_send_time(moments[2], sched, "America/New_York") == datetime(2030, 3, 10, 13, tzinfo=UTC)
    weekly = {**sched, "Frequency": "WEEKLY", "Timezone": "Europe/London", "StartTime": "2030-03-24T09:00:00Z"}
    london = [m.astimezone(schedule.zone("Europe/London")) for m in schedule.occurrences(weekly, BASE)]
    assert {(m.hour, m.weekday()) for m in london} == {(9, 6)}  # Sunday 09:00 on both sides of 2030-03-31
    fixed = {**sched, "Timezone": "UTC-05"}  # the model's fixed offsets never move
    assert {m.hour for m in schedule.occurrences(fixed, BASE)} == {14}

"""When a campaign runs: occurrences of its ``Schedule``, local time, and quiet time (pure functions).

Decisions (docs/contract.md): an IMMEDIATE campaign starts when it was created (a campaign created paused: when it
is resumed); when the server was down
across several occurrences, only the latest missed one runs; with ``IsLocalTime`` the start time's wall-clock time
(in ``Schedule.Timezone``) is used in each endpoint's ``Demographic.Timezone``, and the run starts when the
earliest time zone (UTC+14) reaches it, and DAILY, WEEKLY and MONTHLY occurrences step on that zone's wall clock
(09:00 stays 09:00 across daylight saving); an endpoint inside quiet time is skipped, not delayed.

With local time "the latest missed one" is judged per zone: an occurrence runs unless every zone has a later one
already due (``superseded``), and in its run a zone whose later occurrence is already due is skipped
(``MISSED_OCCURRENCE``). So an HOURLY local-time campaign created at 08:00Z starts the runs of 09:00 .. 22:00 at
once, and each zone gets its own due ones, not only the 22:00 that UTC+14 sends now.
"""

from __future__ import annotations

import calendar
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = {"HOURLY": timedelta(hours=1), "DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1)}
ONE_TIME = ("ONCE", "EVENT", "IN_APP_EVENT")
_WALL_CLOCK = ("DAILY", "WEEKLY", "MONTHLY")  # local time: stepped on Schedule.Timezone's wall clock (_Cadence)
LOCAL_LEAD = timedelta(hours=26)  # local time: UTC+14 sends up to 26 hours before UTC-12
EARLIEST_ZONE, LATEST_ZONE = "UTC+14", "UTC-12"
_OFFSET = re.compile(r"^UTC(?:([+-])(\d{2})(?::(\d{2}))?)?\Z")


def parse_time(value: str) -> datetime:
    """A stored time in UTC, cut to the millisecond as runs store theirs (``iso_ms``): a StartTime written with
    microseconds (Python's ``isoformat()``) would otherwise always be later than its own run, and run again."""
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@cache
def zone(name: str | None) -> tzinfo | None:
    """A Pinpoint ``Timezone`` (``UTC``, ``UTC+05:30``) or an IANA name as a tzinfo; None if unknown."""
    if not name:
        return None
    match = _OFFSET.match(name)
    if match:
        sign, hours, minutes = match.groups()
        if sign is None:
            return UTC
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta >= timedelta(hours=24):
            return None  # UTC+99: no such zone (an endpoint's Demographic.Timezone is any text)
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _add_months(moment: datetime, months: int) -> datetime:
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class _Cadence:
    """A schedule's occurrences: ``start`` stepped by ``frequency``, before ``end``. With ``wall`` (a local-time
    campaign's ``Schedule.Timezone``, for DAILY, WEEKLY and MONTHLY) the steps are taken on that zone's wall clock, so
    09:00 stays 09:00 across its daylight-saving changes; otherwise, and for HOURLY (every hour is an hour), in UTC."""

    start: datetime
    end: datetime | None
    frequency: str
    wall: tzinfo | None = None

    def at(self, index: int) -> datetime:
        if self.wall is None:
            return self._step(self.start, index)
        local = self._step(self.start.astimezone(self.wall).replace(tzinfo=None), index)
        return local.replace(tzinfo=self.wall).astimezone(UTC)

    def _step(self, moment: datetime, index: int) -> datetime:
        return _add_months(moment, index) if self.frequency == "MONTHLY" else moment + PERIODS[self.frequency] * index

    def index_at_or_before(self, moment: datetime) -> int:
        """The index of the latest occurrence at or before ``moment`` (-1 if none), by arithmetic: an hourly
        campaign of ten years has 87,600 occurrences, and the scheduler asks every second."""
        if moment < self.start:
            return -1
        if self.wall is None and self.frequency != "MONTHLY":
            return (moment - self.start) // PERIODS[self.frequency]
        first, now = (
            (self.start, moment)
            if self.wall is None
            else (self.start.astimezone(self.wall), moment.astimezone(self.wall))
        )
        if self.frequency == "MONTHLY":
            index = (now.year - first.year) * 12 + now.month - first.month
        else:
            index = (now.replace(tzinfo=None) - first.replace(tzinfo=None)) // PERIODS[self.frequency]
        while self.at(index + 1) <= moment:  # the wall clock's estimate may be one off across a change of offset
            index += 1
        while index >= 0 and self.at(index) > moment:  # a later day or time in the month: one back
            index -= 1
        return index

    def last_index(self) -> int | None:
        """The index of the last occurrence before ``end`` (-1 if none), or None when the schedule has no end."""
        if self.end is None:
            return None
        index = self.index_at_or_before(self.end)
        return index - 1 if index >= 0 and self.at(index) >= self.end else index


def _read(schedule: dict[str, Any], written: datetime) -> _Cadence:
    start_text = schedule.get("StartTime", "IMMEDIATE")
    start = written if start_text == "IMMEDIATE" else parse_time(start_text)
    end = parse_time(schedule["EndTime"]) if schedule.get("EndTime") else None
    frequency = schedule.get("Frequency", "ONCE")
    wall = zone(schedule.get("Timezone")) if schedule.get("IsLocalTime") and frequency in _WALL_CLOCK else None
    return _Cadence(start, end, frequency, wall)


def occurrences(schedule: dict[str, Any], written: datetime) -> Iterator[datetime]:
    """Each start time of the schedule (UTC; for local time, the wall time read in Schedule.Timezone)."""
    cadence = _read(schedule, written)
    if cadence.frequency in ONE_TIME:
        if cadence.frequency == "ONCE" and (cadence.end is None or cadence.start < cadence.end):
            yield cadence.start
        return
    last = cadence.last_index()
    for index in itertools.count() if last is None else range(last + 1):
        yield cadence.at(index)


def due(schedule: dict[str, Any], written: datetime, last_run: datetime | None, now: datetime) -> datetime | None:
    """The occurrence to run at ``now``, newer than ``last_run``, or None: the latest one due; with local time the
    earliest one due that a later one has not wholly superseded (``superseded``), so that each zone gets its latest
    due occurrence (the scheduler asks again at once for the next)."""
    cadence = _read(schedule, written)
    if cadence.frequency in ONE_TIME:
        latest = next(occurrences(schedule, written), None)
        if latest is None or earliest_send(latest, schedule) > now:
            return None
        return latest if last_run is None or latest > last_run else None
    local = bool(schedule.get("IsLocalTime"))
    # An occurrence's first send is at most LOCAL_LEAD before it (earliest_send), so none later can be due.
    index = cadence.index_at_or_before(now + LOCAL_LEAD if local else now)
    last = cadence.last_index()
    if last is not None:
        index = min(index, last)
    while index >= 0 and earliest_send(cadence.at(index), schedule) > now:
        index -= 1
    if index < 0:
        return None
    first = index
    if local:
        # Every occurrence LOCAL_LEAD before now is superseded by the next (its latest send is at most that long
        # after it), so only the few after that one are looked at, however long the server was down.
        first = 0 if last_run is None else cadence.index_at_or_before(last_run) + 1
        first = max(first, min(index, cadence.index_at_or_before(now - LOCAL_LEAD)))
        while first < index and latest_send(cadence.at(first + 1), schedule) <= now:
            first += 1
    moment = cadence.at(first)
    return moment if first <= index and (last_run is None or moment > last_run) else None


def following(schedule: dict[str, Any], written: datetime, moment: datetime) -> datetime | None:
    """The occurrence after ``moment`` (one of the schedule's), or None when there is none."""
    cadence = _read(schedule, written)
    if cadence.frequency in ONE_TIME:
        return None
    index = cadence.index_at_or_before(moment) + 1
    last = cadence.last_index()
    return None if last is not None and index > last else cadence.at(index)


def superseded(
    next_moment: datetime | None, schedule: dict[str, Any], endpoint_zone: str | None, now: datetime
) -> bool:
    """Whether a local-time occurrence's send to ``endpoint_zone`` is missed for good: the occurrence after it
    (``next_moment``, from ``following``) is already due there too, and only the latest missed one is sent."""
    return next_moment is not None and local_send_time(next_moment, schedule, endpoint_zone) <= now


def earliest_send(moment: datetime, schedule: dict[str, Any]) -> datetime:
    """When the first endpoint of an occurrence is due: the occurrence, or its wall time in UTC+14 (local time)."""
    return local_send_time(moment, schedule, EARLIEST_ZONE) if schedule.get("IsLocalTime") else moment


def latest_send(moment: datetime, schedule: dict[str, Any]) -> datetime:
    """When the last endpoint of an occurrence is due: the occurrence, or its wall time in UTC-12 (local time)."""
    return local_send_time(moment, schedule, LATEST_ZONE) if schedule.get("IsLocalTime") else moment


def finished(schedule: dict[str, Any], written: datetime, last_run: datetime | None) -> bool:
    """True when no occurrence after ``last_run`` remains."""
    cadence = _read(schedule, written)
    if cadence.frequency in ONE_TIME:
        return all(last_run is not None and moment <= last_run for moment in occurrences(schedule, written))
    last = cadence.last_index()
    if last is None:
        return False  # recurring without an end
    return last < 0 or (last_run is not None and cadence.at(last) <= last_run)


def local_send_time(scheduled: datetime, schedule: dict[str, Any], endpoint_zone: str | None) -> datetime:
    """When an endpoint is sent: ``scheduled`` itself, or with IsLocalTime its wall time in the endpoint's zone."""
    if not schedule.get("IsLocalTime"):
        return scheduled
    campaign_zone = zone(schedule.get("Timezone")) or UTC
    wall = scheduled.astimezone(campaign_zone).replace(tzinfo=None)
    target = zone(endpoint_zone) or campaign_zone
    return wall.replace(tzinfo=target).astimezone(UTC)


def in_quiet_time(
    moment: datetime, quiet: dict[str, Any] | None, endpoint_zone: str | None, fallback_zone: str | None = None
) -> bool:
    """Whether ``moment`` falls inside quiet time in the endpoint's local time (its zone, else ``fallback_zone``, a
    local-time campaign's ``Schedule.Timezone``, where such an endpoint is sent, else UTC): "later than or equal to"
    Start and "earlier than or equal to" End (botocore's model), End's minute included (08:00 ends at 08:00:59)."""
    if not quiet or not quiet.get("Start") or not quiet.get("End"):
        return False
    start, end = time.fromisoformat(quiet["Start"]), time.fromisoformat(quiet["End"])
    local = moment.astimezone(zone(endpoint_zone) or zone(fallback_zone) or UTC).time()
    minute = local.replace(second=0, microsecond=0)
    if start <= end:
        return start <= local and minute <= end
    return local >= start or minute <= end  # spans midnight

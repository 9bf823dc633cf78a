"""When a campaign runs: occurrences of its ``Schedule``, local time, and quiet time (pure functions).

Decisions (docs/contract.md): an IMMEDIATE campaign starts when it was created (a campaign created paused: when it
is resumed); when the server was down
across several occurrences, only the latest missed one runs; with ``IsLocalTime`` the start time's wall-clock time
(in ``Schedule.Timezone``) is used in each endpoint's ``Demographic.Timezone``, and the run starts when the
earliest time zone (UTC+14) reaches it; an endpoint inside quiet time is skipped, not delayed.
"""

from __future__ import annotations

import calendar
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = {"HOURLY": timedelta(hours=1), "DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1)}
ONE_TIME = ("ONCE", "EVENT", "IN_APP_EVENT")
LOCAL_LEAD = timedelta(hours=26)  # local time: UTC+14 sends up to 26 hours before UTC-12
_OFFSET = re.compile(r"^UTC(?:([+-])(\d{2})(?::(\d{2}))?)?$")


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


def _occurrence(start: datetime, frequency: str, index: int) -> datetime:
    return _add_months(start, index) if frequency == "MONTHLY" else start + PERIODS[frequency] * index


def _index_at_or_before(start: datetime, frequency: str, moment: datetime) -> int:
    """The index of the latest occurrence at or before ``moment`` (-1 if none), by arithmetic: an hourly campaign
    of ten years has 87,600 occurrences, and the scheduler asks every second."""
    if moment < start:
        return -1
    if frequency != "MONTHLY":
        return (moment - start) // PERIODS[frequency]
    index = (moment.year - start.year) * 12 + moment.month - start.month
    while index >= 0 and _add_months(start, index) > moment:  # a later day or time in the month: one back
        index -= 1
    return index


def _read(schedule: dict[str, Any], written: datetime) -> tuple[datetime, datetime | None, str]:
    start_text = schedule.get("StartTime", "IMMEDIATE")
    start = written if start_text == "IMMEDIATE" else parse_time(start_text)
    end = parse_time(schedule["EndTime"]) if schedule.get("EndTime") else None
    return start, end, schedule.get("Frequency", "ONCE")


def _last_index(start: datetime, end: datetime | None, frequency: str) -> int | None:
    """The index of the last occurrence before ``end`` (-1 if none), or None when the schedule has no end."""
    if end is None:
        return None
    index = _index_at_or_before(start, frequency, end)
    return index - 1 if index >= 0 and _occurrence(start, frequency, index) >= end else index


def occurrences(schedule: dict[str, Any], written: datetime) -> Iterator[datetime]:
    """Each start time of the schedule (UTC; for local time, the wall time read in Schedule.Timezone)."""
    start, end, frequency = _read(schedule, written)
    if frequency in ONE_TIME:
        if frequency == "ONCE" and (end is None or start < end):
            yield start
        return
    last = _last_index(start, end, frequency)
    for index in itertools.count() if last is None else range(last + 1):
        yield _occurrence(start, frequency, index)


def due(schedule: dict[str, Any], written: datetime, last_run: datetime | None, now: datetime) -> datetime | None:
    """The latest occurrence that is due at ``now`` and newer than ``last_run``, or None."""
    start, end, frequency = _read(schedule, written)
    if frequency in ONE_TIME:
        latest = next(occurrences(schedule, written), None)
        if latest is None or earliest_send(latest, schedule) > now:
            return None
    else:
        # An occurrence's first send is at most LOCAL_LEAD before it (earliest_send), so none later can be due.
        index = _index_at_or_before(start, frequency, now + LOCAL_LEAD if schedule.get("IsLocalTime") else now)
        last = _last_index(start, end, frequency)
        if last is not None:
            index = min(index, last)
        while index >= 0 and earliest_send(_occurrence(start, frequency, index), schedule) > now:
            index -= 1
        if index < 0:
            return None
        latest = _occurrence(start, frequency, index)
    return latest if last_run is None or latest > last_run else None


def earliest_send(moment: datetime, schedule: dict[str, Any]) -> datetime:
    """When the first endpoint of an occurrence is due: the occurrence, or its wall time in UTC+14 (local time)."""
    return local_send_time(moment, schedule, "UTC+14") if schedule.get("IsLocalTime") else moment


def finished(schedule: dict[str, Any], written: datetime, last_run: datetime | None) -> bool:
    """True when no occurrence after ``last_run`` remains."""
    start, end, frequency = _read(schedule, written)
    if frequency in ONE_TIME:
        return all(last_run is not None and moment <= last_run for moment in occurrences(schedule, written))
    last = _last_index(start, end, frequency)
    if last is None:
        return False  # recurring without an end
    return last < 0 or (last_run is not None and _occurrence(start, frequency, last) <= last_run)


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

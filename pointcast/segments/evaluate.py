"""Segment evaluation: compile a segment once into a predicate, then ask it about each endpoint.

A campaign run walks every endpoint of an application (up to millions), so all of the work that depends only on
the segment (parsing dates, folding case, building sets, resolving source segments, picking operators) happens once,
in :func:`compile_dimensions` / :func:`compile_segment`. The predicate they return does only dictionary lookups and a
comparison or two per endpoint. Nothing here touches the database: source segments arrive through ``load_segment``.

Semantics follow Amazon Pinpoint's SegmentDimensions and SegmentGroupList (botocore's ``pinpoint`` model). Where
the model leaves a choice open, the choice made here is stated in the docstring of the piece that makes it:

* Attribute values (``Attributes``, ``User.UserAttributes``) are lists; a dimension matches when *any* of the
  endpoint's values matches. EXCLUSIVE is exactly the complement of INCLUSIVE, so an endpoint without the attribute
  matches EXCLUSIVE. The same holds for every ``SetDimension`` (Demographic, Location.Country).
* Dates (BEFORE, AFTER, ON, BETWEEN) are ISO 8601; a value without an offset is UTC and a date without a time is
  00:00:00 UTC of that day. BEFORE and AFTER are strict, BETWEEN is inclusive at both ends, ON compares UTC days.
* ``Demographic.DeviceType`` is compared, case-insensitively, with the endpoint's ``Demographic.Platform``: an
  endpoint definition has no device-type member, and Pinpoint derives device type from the platform (this mapping
  is recorded in docs/contract.md). ``Demographic.Platform`` is also case-insensitive; AppVersion, Channel, Make,
  Model and Location.Country are exact.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = [
    "DEFAULT_GPS_RANGE_KM",
    "EARTH_RADIUS_KM",
    "MAX_SOURCE_DEPTH",
    "RECENCY_DURATIONS",
    "EndpointView",
    "Predicate",
    "compile_dimensions",
    "compile_segment",
    "source_step",
]


@dataclass(frozen=True, slots=True)
class EndpointView:
    """What a predicate sees of one endpoint.

    ``doc`` is the endpoint definition as stored (the parsed ``endpoints.doc`` JSON); ``last_active`` is the time of
    the endpoint's most recent activity (an aware datetime; a naive one is taken as UTC), or None when unknown.
    """

    id: str
    doc: dict[str, Any]
    last_active: datetime | None


Predicate = Callable[[EndpointView], bool]
"""True when the endpoint is in the audience."""

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG) used for GPSPoint distances."""

DEFAULT_GPS_RANGE_KM = 100.0
"""GPSPointDimension.RangeInKilometers when the segment leaves it out (Pinpoint's default)."""

# Distances are computed in floating point; a point exactly at the range must not fall out by a rounding error.
_GPS_TOLERANCE_KM = 1e-6

RECENCY_DURATIONS: dict[str, timedelta] = {
    "HR_24": timedelta(hours=24),
    "DAY_7": timedelta(days=7),
    "DAY_14": timedelta(days=14),
    "DAY_30": timedelta(days=30),
}
"""RecencyDimension.Duration values and the windows they stand for."""

MAX_SOURCE_DEPTH = 10
"""How deep source segments may nest; deeper means a cycle (or a chain nobody means), and compiling raises."""

_METRIC_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "GREATER_THAN": operator.gt,
    "LESS_THAN": operator.lt,
    "GREATER_THAN_OR_EQUAL": operator.ge,
    "LESS_THAN_OR_EQUAL": operator.le,
    "EQUAL": operator.eq,
}


def _always(view: EndpointView) -> bool:
    """The audience of an empty criterion: every endpoint."""
    return True


def _never(view: EndpointView) -> bool:
    """The audience of a criterion nothing can satisfy (an unparseable date, BETWEEN with one value)."""
    return False


# --- combining predicates ------------------------------------------------------------------------------------------


def _all(predicates: Iterable[Predicate]) -> Predicate:
    """Endpoints every predicate accepts (all endpoints when there are none)."""
    preds = tuple(p for p in predicates if p is not _always)
    if any(p is _never for p in preds):
        return _never
    if not preds:
        return _always
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda view: first(view) and second(view)

    def every(view: EndpointView) -> bool:
        for predicate in preds:  # noqa: SIM110 - a plain loop is faster than all() over a generator
            if not predicate(view):
                return False
        return True

    return every


def _any(predicates: Iterable[Predicate]) -> Predicate:
    """Endpoints at least one predicate accepts (no endpoint when there are none)."""
    preds = tuple(p for p in predicates if p is not _never)
    if any(p is _always for p in preds):
        return _always
    if not preds:
        return _never
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda view: first(view) or second(view)

    def some(view: EndpointView) -> bool:
        for predicate in preds:  # noqa: SIM110 - a plain loop is faster than any() over a generator
            if predicate(view):
                return True
        return False

    return some


def _none(predicates: Iterable[Predicate]) -> Predicate:
    """Endpoints no predicate accepts (all endpoints when there are none)."""
    either = _any(predicates)
    if either is _never:
        return _always
    if either is _always:
        return _never
    return lambda view: not either(view)


def _combine(how: str, predicates: list[Predicate], where: str) -> Predicate:
    """ALL / ANY / NONE of ``predicates``; ``where`` names the member for the error message."""
    if how == "ALL":
        return _all(predicates)
    if how == "ANY":
        return _any(predicates)
    if how == "NONE":
        return _none(predicates)
    raise ValueError(f"{where}: unknown value {how!r} (expected ALL, ANY or NONE)")


# --- reading values out of an endpoint definition ------------------------------------------------------------------

Getter = Callable[[dict[str, Any]], Any]


def _getter(*path: str) -> Getter:
    """A function returning ``doc[path[0]][path[1]]...`` or None when any step is missing (or null)."""
    if len(path) == 1:
        (a,) = path
        return lambda doc: doc.get(a)
    if len(path) == 2:
        a, b = path

        def get2(doc: dict[str, Any]) -> Any:
            section = doc.get(a)
            return None if section is None else section.get(b)

        return get2
    if len(path) == 3:
        a, b, c = path

        def get3(doc: dict[str, Any]) -> Any:
            outer = doc.get(a)
            if outer is None:
                return None
            inner = outer.get(b)
            return None if inner is None else inner.get(c)

        return get3
    raise AssertionError(f"unsupported path {path}")


# --- attribute dimensions (Attributes, UserAttributes) -------------------------------------------------------------


def _instant(text: Any) -> datetime | None:
    """``text`` read as an ISO 8601 date or date-time, in UTC (no offset means UTC); None when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _attribute(get: Getter, where: str, dimension: dict[str, Any]) -> Predicate:
    """One AttributeDimension over the list of strings that ``get`` finds (a missing attribute has no values).

    INCLUSIVE: any endpoint value equals any of Values (case-sensitive). EXCLUSIVE: the complement of INCLUSIVE, so
    an endpoint without the attribute matches. CONTAINS: any endpoint value has any of Values as a substring.
    BEFORE / AFTER: any endpoint value, read as an ISO 8601 instant, is strictly before / after Values[0]. ON: any
    endpoint value falls on the same UTC day as Values[0]. BETWEEN: Values[0] <= value <= Values[1]. Endpoint values
    that are not ISO 8601 never match a date comparison; a segment whose date Values cannot be read matches nothing.
    """
    kind = dimension.get("AttributeType") or "INCLUSIVE"
    values = list(dimension.get("Values") or ())

    if kind in ("INCLUSIVE", "EXCLUSIVE"):
        wanted = frozenset(values)
        if kind == "INCLUSIVE":

            def inclusive(view: EndpointView) -> bool:
                have = get(view.doc)
                return have is not None and not wanted.isdisjoint(have)

            return inclusive

        def exclusive(view: EndpointView) -> bool:
            have = get(view.doc)
            return have is None or wanted.isdisjoint(have)

        return exclusive

    if kind == "CONTAINS":
        needles = tuple(values)

        def contains(view: EndpointView) -> bool:
            have = get(view.doc)
            if have is None:
                return False
            for value in have:
                for needle in needles:
                    if needle in value:
                        return True
            return False

        return contains

    if kind not in ("BEFORE", "AFTER", "ON", "BETWEEN"):
        raise ValueError(f"{where}.AttributeType: unknown value {kind!r}")
    bounds = [_instant(v) for v in values[: 2 if kind == "BETWEEN" else 1]]
    if len(bounds) < (2 if kind == "BETWEEN" else 1) or any(b is None for b in bounds):
        return _never

    def dated(test: Callable[[datetime], bool]) -> Predicate:
        def check(view: EndpointView) -> bool:
            have = get(view.doc)
            if have is None:
                return False
            for value in have:
                moment = _instant(value)
                if moment is not None and test(moment):
                    return True
            return False

        return check

    first = bounds[0]
    assert first is not None
    if kind == "BEFORE":
        return dated(lambda moment: moment < first)
    if kind == "AFTER":
        return dated(lambda moment: moment > first)
    if kind == "ON":
        day = _utc_day(first)
        return _never if day is None else dated(lambda moment: _utc_day(moment) == day)
    last = bounds[1]
    assert last is not None
    return dated(lambda moment: first <= moment <= last)


def _utc_day(moment: datetime) -> date | None:
    """The moment's day in UTC; None at the edge of the calendar (0001-01-01T00:00:00+01:00 is in year 0)."""
    try:
        return moment.astimezone(UTC).date()
    except OverflowError:
        return None


def _attributes(member: str, path: tuple[str, ...], dimensions: dict[str, Any] | None) -> list[Predicate]:
    """One predicate per attribute named in ``dimensions`` (a MapOfAttributeDimension)."""
    return [
        _attribute(_getter(*path, name), f"{member}.{name}", dimension)
        for name, dimension in (dimensions or {}).items()
    ]


# --- set dimensions (Demographic, Location.Country) ----------------------------------------------------------------


def _set(get: Getter, where: str, dimension: dict[str, Any] | None, *, fold: bool = False) -> Predicate:
    """One SetDimension over the single string ``get`` finds.

    INCLUSIVE (the default): the value is one of Values. EXCLUSIVE: the complement, so an endpoint without the value
    matches. ``fold`` compares case-insensitively.
    """
    if dimension is None:
        return _always
    kind = dimension.get("DimensionType") or "INCLUSIVE"
    if kind not in ("INCLUSIVE", "EXCLUSIVE"):
        raise ValueError(f"{where}.DimensionType: unknown value {kind!r}")
    values = dimension.get("Values") or ()
    if fold:
        folded = frozenset(str(v).casefold() for v in values)

        def member(view: EndpointView) -> bool:
            have = get(view.doc)
            return have is not None and have.casefold() in folded

    else:
        wanted = frozenset(values)

        def member(view: EndpointView) -> bool:
            return get(view.doc) in wanted

    if kind == "INCLUSIVE":
        return member
    return lambda view: not member(view)


def _demographic(demographic: dict[str, Any] | None) -> list[Predicate]:
    """SegmentDemographics: each member given is a SetDimension; all of them must hold.

    DeviceType is compared (case-insensitively) with ``Demographic.Platform``, since an endpoint records no device
    type of its own (docs/contract.md); Platform is case-insensitive too; the others compare exactly.
    """
    if not demographic:
        return []
    where = "Dimensions.Demographic"
    return [
        _set(_getter("Demographic", "AppVersion"), f"{where}.AppVersion", demographic.get("AppVersion")),
        _set(_getter("ChannelType"), f"{where}.Channel", demographic.get("Channel")),
        _set(_getter("Demographic", "Platform"), f"{where}.DeviceType", demographic.get("DeviceType"), fold=True),
        _set(_getter("Demographic", "Make"), f"{where}.Make", demographic.get("Make")),
        _set(_getter("Demographic", "Model"), f"{where}.Model", demographic.get("Model")),
        _set(_getter("Demographic", "Platform"), f"{where}.Platform", demographic.get("Platform"), fold=True),
    ]


# --- location ------------------------------------------------------------------------------------------------------


def _gps(dimension: dict[str, Any]) -> Predicate:
    """GPSPointDimension: great-circle (haversine) distance from Coordinates at most RangeInKilometers (100 km
    when not given; a point exactly at the range is inside). Endpoints without both Latitude and Longitude do not
    match.

    The comparison is done on the haversine term ``a`` against the ``a`` of the range (the distance is monotonic in
    it), so no per-endpoint asin or sqrt; a latitude difference alone larger than the range rejects early.
    """
    coordinates = dimension.get("Coordinates") or {}
    try:
        phi0 = math.radians(float(coordinates["Latitude"]))
        lam0 = math.radians(float(coordinates["Longitude"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("Dimensions.Location.GPSPoint.Coordinates needs numeric Latitude and Longitude") from exc
    km = dimension.get("RangeInKilometers")
    angle = (DEFAULT_GPS_RANGE_KM if km is None else float(km)) / EARTH_RADIUS_KM + _GPS_TOLERANCE_KM / EARTH_RADIUS_KM
    if angle < 0:
        return _never
    if angle >= math.pi:  # the range covers the whole globe; only the coordinates themselves are needed
        angle = math.pi
    a_max = math.sin(angle / 2) ** 2
    cos_phi0 = math.cos(phi0)
    radians, sin, cos = math.radians, math.sin, math.cos

    def within(view: EndpointView) -> bool:
        location = view.doc.get("Location")
        if location is None:
            return False
        latitude = location.get("Latitude")
        longitude = location.get("Longitude")
        if latitude is None or longitude is None:
            return False
        phi = radians(latitude)
        dphi = phi - phi0
        if dphi > angle or -dphi > angle:
            return False
        half_dphi = sin(dphi / 2)
        half_dlam = sin((radians(longitude) - lam0) / 2)
        return half_dphi * half_dphi + cos_phi0 * cos(phi) * half_dlam * half_dlam <= a_max

    return within


def _location(location: dict[str, Any] | None) -> list[Predicate]:
    """SegmentLocation: Country is a SetDimension on ``Location.Country``; GPSPoint a distance check."""
    if not location:
        return []
    checks = [_set(_getter("Location", "Country"), "Dimensions.Location.Country", location.get("Country"))]
    if location.get("GPSPoint") is not None:
        checks.append(_gps(location["GPSPoint"]))
    return checks


# --- metrics and behaviour -----------------------------------------------------------------------------------------


def _metric(name: str, dimension: dict[str, Any]) -> Predicate:
    """MetricDimension: the endpoint's metric ``name`` compared with Value; an endpoint without it does not match."""
    op_name = dimension.get("ComparisonOperator")
    compare = _METRIC_OPERATORS.get(op_name)  # type: ignore[arg-type]
    if compare is None:
        raise ValueError(f"Dimensions.Metrics.{name}.ComparisonOperator: unknown value {op_name!r}")
    target = float(dimension["Value"])
    get = _getter("Metrics", name)

    def check(view: EndpointView) -> bool:
        value = get(view.doc)
        return value is not None and compare(value, target)

    return check


def _utc(moment: datetime) -> datetime:
    """``moment`` as an aware datetime (naive ones are taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _recency(recency: dict[str, Any], now: datetime) -> Predicate:
    """RecencyDimension: ACTIVE when ``last_active`` is no earlier than ``now`` minus Duration (the boundary and any
    time after ``now``, e.g. a clock ahead of ours, count as active); INACTIVE is the complement, so an endpoint
    whose last activity is unknown is INACTIVE.
    """
    duration = RECENCY_DURATIONS.get(recency.get("Duration"))  # type: ignore[arg-type]
    if duration is None:
        raise ValueError(f"Dimensions.Behavior.Recency.Duration: unknown value {recency.get('Duration')!r}")
    kind = recency.get("RecencyType")
    if kind not in ("ACTIVE", "INACTIVE"):
        raise ValueError(f"Dimensions.Behavior.Recency.RecencyType: unknown value {kind!r}")
    cutoff = _utc(now) - duration

    def active(view: EndpointView) -> bool:
        last = view.last_active
        if last is None:
            return False
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        return last >= cutoff

    if kind == "ACTIVE":
        return active
    return lambda view: not active(view)


# --- public API ----------------------------------------------------------------------------------------------------


def compile_dimensions(dimensions: dict[str, Any], *, now: datetime) -> Predicate:
    """The predicate for one SegmentDimensions: every criterion present must hold (empty dimensions match all).

    ``now`` anchors Behavior.Recency (a naive datetime is taken as UTC). Raises ValueError for values the model
    does not allow (an unknown AttributeType, ComparisonOperator, Duration...), so a broken segment fails when the
    campaign starts rather than silently selecting nobody.
    """
    dimensions = dimensions or {}
    checks: list[Predicate] = []
    checks += _attributes("Dimensions.Attributes", ("Attributes",), dimensions.get("Attributes"))
    checks += _attributes("Dimensions.UserAttributes", ("User", "UserAttributes"), dimensions.get("UserAttributes"))
    checks += _demographic(dimensions.get("Demographic"))
    checks += _location(dimensions.get("Location"))
    checks += [_metric(name, metric) for name, metric in (dimensions.get("Metrics") or {}).items()]
    recency = (dimensions.get("Behavior") or {}).get("Recency")
    if recency is not None:
        checks.append(_recency(recency, now))
    return _all(checks)


LoadSegment = Callable[[str, int | None], dict[str, Any]]


def source_step(reference: dict[str, Any], chain: tuple[str, ...]) -> tuple[tuple[str, int | None], tuple[str, ...]]:
    """A SourceSegments reference's (id, version) and the chain of segments down to it; ValueError past
    :data:`MAX_SOURCE_DEPTH` (how a cycle shows up). Shared with the SQL compiler (pointcast.segments.query)."""
    segment_id: str = reference["Id"]
    version: int | None = reference.get("Version")
    path = (*chain, segment_id if version is None else f"{segment_id}@{version}")
    if len(path) - 1 > MAX_SOURCE_DEPTH:
        raise ValueError(f"source segments nest deeper than {MAX_SOURCE_DEPTH} levels (a cycle?): {' -> '.join(path)}")
    return (segment_id, version), path


class _Compiler:
    """Compiles a segment and its source segments, each (id, version) once, refusing nesting past the limit."""

    def __init__(self, now: datetime, load_segment: LoadSegment) -> None:
        self.now = now
        self.load_segment = load_segment
        self.compiled: dict[tuple[str, int | None], Predicate] = {}

    def segment(self, segment: dict[str, Any], chain: tuple[str, ...]) -> Predicate:
        checks: list[Predicate] = []
        if segment.get("Dimensions"):
            checks.append(compile_dimensions(segment["Dimensions"], now=self.now))
        if segment.get("SegmentGroups"):
            checks.append(self.groups(segment["SegmentGroups"], chain))
        return _all(checks)

    def groups(self, group_list: dict[str, Any], chain: tuple[str, ...]) -> Predicate:
        groups = group_list.get("Groups") or []
        if not groups:
            return _always
        compiled = [self.group(index, group, chain) for index, group in enumerate(groups)]
        return _combine(group_list.get("Include") or "ALL", compiled, "SegmentGroups.Include")

    def group(self, index: int, group: dict[str, Any], chain: tuple[str, ...]) -> Predicate:
        where = f"SegmentGroups.Groups[{index}]"
        sources = [self.source(reference, chain) for reference in group.get("SourceSegments") or []]
        base = _combine(group.get("SourceType") or "ANY", sources, f"{where}.SourceType") if sources else _always
        dimensions = [compile_dimensions(d, now=self.now) for d in group.get("Dimensions") or []]
        filtered = _combine(group.get("Type") or "ANY", dimensions, f"{where}.Type") if dimensions else _always
        return _all([base, filtered])

    def source(self, reference: dict[str, Any], chain: tuple[str, ...]) -> Predicate:
        key, path = source_step(reference, chain)
        if key not in self.compiled:
            self.compiled[key] = self.segment(self.load_segment(*key), path)
        return self.compiled[key]


def compile_segment(segment: dict[str, Any], *, now: datetime, load_segment: LoadSegment) -> Predicate:
    """The predicate for a SegmentResponse: its Dimensions AND its SegmentGroups (whichever are present).

    SegmentGroups, as Pinpoint evaluates them: a group's base audience is its SourceSegments combined by SourceType
    (ALL: in every source; ANY, the default: in at least one; NONE: in none; no sources: every endpoint); the base is
    filtered by the group's Dimensions combined by Type (ALL; ANY, the default; NONE; an empty list filters
    nothing); the groups are combined by Include (ALL, the default; ANY; NONE; no groups: every endpoint).

    Source segments are fetched with ``load_segment(id, version)`` (version None: the current one), compiled once
    per (id, version), recursively. Nesting deeper than :data:`MAX_SOURCE_DEPTH` raises ValueError: that is how a
    cycle (a segment that is, through others, its own source) shows up.
    """
    root = segment.get("Id") or "<segment>"
    return _Compiler(now, load_segment).segment(segment, (str(root),))

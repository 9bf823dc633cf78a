"""Segment evaluation (pointcast.segments.evaluate): exact audiences over a handmade set of endpoints."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointcast.segments.evaluate import (
    EARTH_RADIUS_KM,
    MAX_SOURCE_DEPTH,
    EndpointView,
    Predicate,
    compile_dimensions,
    compile_segment,
)

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)

ENDPOINTS = [
    EndpointView(
        "e1",
        {
            "ChannelType": "APNS",
            "Location": {"Country": "US", "Latitude": 40.0, "Longitude": -74.0},
            "Demographic": {"AppVersion": "2.0", "Make": "Apple", "Model": "iPhone15", "Platform": "iOS"},
            "Attributes": {"plan": ["pro"], "signup": ["2024-01-01T00:00:00Z"], "tags": ["sports", "news"]},
            "Metrics": {"score": 10.0, "visits": 3.0},
            "User": {"UserId": "alice", "UserAttributes": {"tier": ["gold"]}},
        },
        NOW - timedelta(hours=1),
    ),
    EndpointView(
        "e2",
        {
            "ChannelType": "GCM",
            "Location": {"Country": "FR", "Latitude": 48.8566, "Longitude": 2.3522},
            "Demographic": {"AppVersion": "1.0", "Make": "Samsung", "Model": "S23", "Platform": "ANDROID"},
            "Attributes": {"plan": ["free"], "signup": ["2023-12-31T23:59:59Z"], "tags": ["Sports"]},
            "Metrics": {"score": 5.0},
            "User": {"UserId": "bob", "UserAttributes": {"tier": ["silver"]}},
        },
        NOW - timedelta(days=8),
    ),
    EndpointView(  # no Demographic, a country but no coordinates, a date-only attribute, unknown activity
        "e3",
        {
            "ChannelType": "EMAIL",
            "Location": {"Country": "US"},
            "Attributes": {"plan": ["pro", "team"], "signup": ["2024-01-01"]},
            "Metrics": {"score": 10},
            "User": {"UserId": "carol"},
        },
        None,
    ),
    EndpointView(  # exactly one degree of latitude north of e1; signup 2024-01-01T23:00Z; active exactly 7 days ago
        "e4",
        {
            "ChannelType": "SMS",
            "Location": {"Latitude": 41.0, "Longitude": -74.0},
            "Demographic": {"Platform": "android", "Make": "Google"},
            "Attributes": {"signup": ["2024-01-02T00:00:00+01:00"]},
        },
        NOW - timedelta(days=7),
    ),
    EndpointView("e5", {"ChannelType": "CUSTOM"}, NOW - timedelta(days=31)),  # almost nothing
    EndpointView(  # a bad date beside a good one; "Pro" (case); Berlin; a naive last_active (UTC)
        "e6",
        {
            "ChannelType": "EMAIL",
            "Location": {"Country": "DE", "Latitude": 52.52, "Longitude": 13.405},
            "Attributes": {"plan": ["Pro"], "signup": ["not a date", "2025-01-01"]},
            "Metrics": {"score": 20.5},
        },
        (NOW - timedelta(days=29)).replace(tzinfo=None),
    ),
]
ALL = {view.id for view in ENDPOINTS}


def audience(predicate: Predicate) -> set[str]:
    return {view.id for view in ENDPOINTS if predicate(view)}


def attr(kind: str | None, *values: str) -> dict[str, Any]:
    dimension: dict[str, Any] = {"Values": list(values)}
    if kind is not None:
        dimension["AttributeType"] = kind
    return dimension


def setdim(*values: str, kind: str | None = None) -> dict[str, Any]:
    dimension: dict[str, Any] = {"Values": list(values)}
    if kind is not None:
        dimension["DimensionType"] = kind
    return dimension


def gps(lat: float, lon: float, km: float | None = None) -> dict[str, Any]:
    point: dict[str, Any] = {"Coordinates": {"Latitude": lat, "Longitude": lon}}
    if km is not None:
        point["RangeInKilometers"] = km
    return {"Location": {"GPSPoint": point}}


def metric(op: str, value: float, name: str = "score") -> dict[str, Any]:
    return {"Metrics": {name: {"ComparisonOperator": op, "Value": value}}}


def recency(duration: str, kind: str) -> dict[str, Any]:
    return {"Behavior": {"Recency": {"Duration": duration, "RecencyType": kind}}}


ONE_DEGREE_KM = EARTH_RADIUS_KM * math.radians(1.0)

DIMENSION_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("empty", {}, ALL),
    # Attributes: INCLUSIVE / EXCLUSIVE / CONTAINS
    ("inclusive", {"Attributes": {"plan": attr("INCLUSIVE", "pro")}}, {"e1", "e3"}),
    ("inclusive is the default", {"Attributes": {"plan": attr(None, "pro")}}, {"e1", "e3"}),
    ("inclusive any of values", {"Attributes": {"plan": attr("INCLUSIVE", "free", "team")}}, {"e2", "e3"}),
    ("inclusive missing attribute", {"Attributes": {"nope": attr("INCLUSIVE", "pro")}}, set()),
    ("exclusive (missing matches)", {"Attributes": {"plan": attr("EXCLUSIVE", "pro")}}, {"e2", "e4", "e5", "e6"}),
    ("exclusive missing attribute", {"Attributes": {"nope": attr("EXCLUSIVE", "pro")}}, ALL),
    ("contains", {"Attributes": {"tags": attr("CONTAINS", "port")}}, {"e1", "e2"}),
    ("contains is case-sensitive", {"Attributes": {"tags": attr("CONTAINS", "Spo")}}, {"e2"}),
    ("contains any of values", {"Attributes": {"tags": attr("CONTAINS", "new", "Spo")}}, {"e1", "e2"}),
    (
        "attributes are ANDed",
        {"Attributes": {"plan": attr("INCLUSIVE", "pro", "free"), "tags": attr("CONTAINS", "news")}},
        {"e1"},
    ),
    # Attributes: dates, on and around the 2024-01-01 UTC day boundary
    ("before date", {"Attributes": {"signup": attr("BEFORE", "2024-01-01")}}, {"e2"}),
    ("before instant", {"Attributes": {"signup": attr("BEFORE", "2024-01-01T00:00:01Z")}}, {"e1", "e2", "e3"}),
    ("after date", {"Attributes": {"signup": attr("AFTER", "2024-01-01")}}, {"e4", "e6"}),
    ("after is strict", {"Attributes": {"signup": attr("AFTER", "2024-01-01T23:00:00Z")}}, {"e6"}),
    ("on date", {"Attributes": {"signup": attr("ON", "2024-01-01")}}, {"e1", "e3", "e4"}),
    ("on previous day", {"Attributes": {"signup": attr("ON", "2023-12-31")}}, {"e2"}),
    ("on uses the UTC day", {"Attributes": {"signup": attr("ON", "2024-01-01T18:00:00-08:00")}}, set()),
    (
        "between is inclusive",
        {"Attributes": {"signup": attr("BETWEEN", "2023-12-31T23:59:59Z", "2024-01-01T00:00:00Z")}},
        {"e1", "e2", "e3"},
    ),
    ("between reversed", {"Attributes": {"signup": attr("BETWEEN", "2024-02-01", "2023-01-01")}}, set()),
    ("between one value", {"Attributes": {"signup": attr("BETWEEN", "2023-01-01")}}, set()),
    ("unparseable segment date", {"Attributes": {"signup": attr("BEFORE", "yesterday")}}, set()),
    ("date on non-date attribute", {"Attributes": {"plan": attr("AFTER", "2000-01-01")}}, set()),
    # UserAttributes
    ("user inclusive", {"UserAttributes": {"tier": attr("INCLUSIVE", "gold")}}, {"e1"}),
    ("user exclusive", {"UserAttributes": {"tier": attr("EXCLUSIVE", "gold")}}, ALL - {"e1"}),
    ("user contains", {"UserAttributes": {"tier": attr("CONTAINS", "l")}}, {"e1", "e2"}),
    # Demographic
    ("app version", {"Demographic": {"AppVersion": setdim("2.0")}}, {"e1"}),
    ("app version exclusive", {"Demographic": {"AppVersion": setdim("2.0", kind="EXCLUSIVE")}}, ALL - {"e1"}),
    ("channel", {"Demographic": {"Channel": setdim("EMAIL", "SMS")}}, {"e3", "e4", "e6"}),
    ("channel exclusive", {"Demographic": {"Channel": setdim("EMAIL", "SMS", kind="EXCLUSIVE")}}, {"e1", "e2", "e5"}),
    ("device type is platform, any case", {"Demographic": {"DeviceType": setdim("Android")}}, {"e2", "e4"}),
    ("make", {"Demographic": {"Make": setdim("Apple")}}, {"e1"}),
    ("make is exact", {"Demographic": {"Make": setdim("apple")}}, set()),
    ("model", {"Demographic": {"Model": setdim("S23", "iPhone15")}}, {"e1", "e2"}),
    ("platform any case", {"Demographic": {"Platform": setdim("IOS")}}, {"e1"}),
    (
        "platform exclusive (missing matches)",
        {"Demographic": {"Platform": setdim("ios", "android", kind="EXCLUSIVE")}},
        {"e3", "e5", "e6"},
    ),
    (
        "demographic members are ANDed",
        {"Demographic": {"Platform": setdim("android"), "Make": setdim("Google")}},
        {"e4"},
    ),
    # Location
    ("country", {"Location": {"Country": setdim("US")}}, {"e1", "e3"}),
    ("country exclusive", {"Location": {"Country": setdim("US", kind="EXCLUSIVE")}}, {"e2", "e4", "e5", "e6"}),
    ("gps default range 100 km", gps(40.0, -74.0), {"e1"}),
    ("gps exactly at range", gps(40.0, -74.0, ONE_DEGREE_KM), {"e1", "e4"}),
    ("gps just inside range", gps(40.0, -74.0, ONE_DEGREE_KM + 0.001), {"e1", "e4"}),
    ("gps just outside range", gps(40.0, -74.0, ONE_DEGREE_KM - 0.001), {"e1"}),
    ("gps paris 1000 km (berlin 878 km)", gps(48.8566, 2.3522, 1000), {"e2", "e6"}),
    ("gps paris 800 km", gps(48.8566, 2.3522, 800), {"e2"}),
    ("gps whole globe", gps(0, 0, 30000), {"e1", "e2", "e4", "e6"}),
    ("gps along a parallel (85 km east)", gps(40.0, -73.0), {"e1"}),
    # Metrics
    ("greater than", metric("GREATER_THAN", 10), {"e6"}),
    ("greater than or equal", metric("GREATER_THAN_OR_EQUAL", 10), {"e1", "e3", "e6"}),
    ("less than", metric("LESS_THAN", 10), {"e2"}),
    ("less than or equal", metric("LESS_THAN_OR_EQUAL", 10), {"e1", "e2", "e3"}),
    ("equal (int and float)", metric("EQUAL", 10), {"e1", "e3"}),
    ("equal nobody", metric("EQUAL", 10.5), set()),
    ("missing metric never matches", metric("LESS_THAN", 1e9, name="visits"), {"e1"}),
    (
        "metrics are ANDed",
        {"Metrics": {**metric("GREATER_THAN_OR_EQUAL", 10)["Metrics"], **metric("EQUAL", 3, "visits")["Metrics"]}},
        {"e1"},
    ),
    # Behavior.Recency (e3 has no known activity; e4 is exactly 7 days ago; e6 is naive)
    ("active 24h", recency("HR_24", "ACTIVE"), {"e1"}),
    ("inactive 24h", recency("HR_24", "INACTIVE"), ALL - {"e1"}),
    ("active 7 days (boundary included)", recency("DAY_7", "ACTIVE"), {"e1", "e4"}),
    ("inactive 7 days", recency("DAY_7", "INACTIVE"), {"e2", "e3", "e5", "e6"}),
    ("active 14 days", recency("DAY_14", "ACTIVE"), {"e1", "e2", "e4"}),
    ("active 30 days", recency("DAY_30", "ACTIVE"), {"e1", "e2", "e4", "e6"}),
    ("inactive 30 days (unknown is inactive)", recency("DAY_30", "INACTIVE"), {"e3", "e5"}),
    # kinds are ANDed
    (
        "attributes and location and recency",
        {
            "Attributes": {"plan": attr("INCLUSIVE", "pro")},
            "Location": {"Country": setdim("US")},
            **recency("DAY_30", "ACTIVE"),
        },
        {"e1"},
    ),
    (
        "country and gps",
        {"Location": {"Country": setdim("US"), "GPSPoint": gps(40.0, -74.0, 500)["Location"]["GPSPoint"]}},
        {"e1"},
    ),
]


@pytest.mark.parametrize(
    ("dimensions", "expected"), [c[1:] for c in DIMENSION_CASES], ids=[c[0] for c in DIMENSION_CASES]
)
def test_dimensions(dimensions: dict[str, Any], expected: set[str]) -> None:
    assert audience(compile_dimensions(dimensions, now=NOW)) == expected


@pytest.mark.parametrize(
    "dimensions",
    [
        {"Attributes": {"plan": attr("SOMETIMES", "pro")}},
        {"Demographic": {"Platform": setdim("ios", kind="MAYBE")}},
        metric("ABOUT", 3),
        recency("DAY_3", "ACTIVE"),
        recency("DAY_7", "SLEEPY"),
        {"Location": {"GPSPoint": {"Coordinates": {"Latitude": 1.0}}}},
    ],
    ids=["attribute type", "dimension type", "comparison operator", "duration", "recency type", "coordinates"],
)
def test_invalid_dimensions_raise(dimensions: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        compile_dimensions(dimensions, now=NOW)


# --- segment groups ------------------------------------------------------------------------------------------------

PRO = {"Attributes": {"plan": attr("INCLUSIVE", "pro")}}  # e1 e3
US = {"Location": {"Country": setdim("US")}}  # e1 e3
EMAIL = {"Demographic": {"Channel": setdim("EMAIL")}}  # e3 e6
ACTIVE_7 = recency("DAY_7", "ACTIVE")  # e1 e4


def grouped(*groups: dict[str, Any], include: str | None = None, **extra: Any) -> dict[str, Any]:
    group_list: dict[str, Any] = {"Groups": list(groups)}
    if include is not None:
        group_list["Include"] = include
    return {"Id": "seg", "SegmentGroups": group_list, **extra}


def group(
    sources: list[str | tuple[str, int]] | None = None, dims: list[dict[str, Any]] | None = None, **kw: Any
) -> dict[str, Any]:
    g: dict[str, Any] = dict(kw)
    if sources is not None:
        g["SourceSegments"] = [{"Id": s} if isinstance(s, str) else {"Id": s[0], "Version": s[1]} for s in sources]
    if dims is not None:
        g["Dimensions"] = dims
    return g


STORED: dict[str, dict[str, Any]] = {
    "pro": {"Id": "pro", "Version": 2, "Dimensions": PRO},
    "android": {"Id": "android", "Version": 1, "Dimensions": {"Demographic": {"DeviceType": setdim("android")}}},
    "active7": {"Id": "active7", "Version": 1, "Dimensions": ACTIVE_7},
    "pro-email": grouped(group(["pro"], [EMAIL]), Id="pro-email"),  # e3
    "nested2": grouped(group(["pro-email"]), Id="nested2"),  # e3, two levels down
}
VERSIONS: dict[tuple[str, int], dict[str, Any]] = {
    ("pro", 1): {"Id": "pro", "Version": 1, "Dimensions": {"Attributes": {"plan": attr("INCLUSIVE", "free")}}},  # e2
}


def load(segment_id: str, version: int | None) -> dict[str, Any]:
    if version is not None and (segment_id, version) in VERSIONS:
        return VERSIONS[(segment_id, version)]
    return STORED[segment_id]


GROUP_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    # SourceType
    ("sources ALL", grouped(group(["pro", "active7"], SourceType="ALL")), {"e1"}),
    ("sources ANY", grouped(group(["pro", "active7"], SourceType="ANY")), {"e1", "e3", "e4"}),
    ("sources default ANY", grouped(group(["pro", "active7"])), {"e1", "e3", "e4"}),
    ("sources NONE", grouped(group(["pro", "active7"], SourceType="NONE")), {"e2", "e5", "e6"}),
    ("no sources = all endpoints", grouped(group()), ALL),
    ("source version", grouped(group([("pro", 1)])), {"e2"}),
    ("source current version", grouped(group([("pro", 2)])), {"e1", "e3"}),
    # Type
    ("dimensions ALL", grouped(group(dims=[US, EMAIL], Type="ALL")), {"e3"}),
    ("dimensions ANY", grouped(group(dims=[US, EMAIL], Type="ANY")), {"e1", "e3", "e6"}),
    ("dimensions default ANY", grouped(group(dims=[US, EMAIL])), {"e1", "e3", "e6"}),
    ("dimensions NONE", grouped(group(dims=[US, EMAIL], Type="NONE")), {"e2", "e4", "e5"}),
    ("empty dimensions list filters nothing", grouped(group(["android"], dims=[])), {"e2", "e4"}),
    ("sources filtered by dimensions", grouped(group(["pro"], [EMAIL])), {"e3"}),
    ("sources ANY filtered NONE", grouped(group(["pro", "android"], [US], Type="NONE")), {"e2", "e4"}),
    # Include
    ("include ALL", grouped(group(["pro"]), group(dims=[EMAIL]), include="ALL"), {"e3"}),
    ("include default ALL", grouped(group(["pro"]), group(dims=[EMAIL])), {"e3"}),
    ("include ANY", grouped(group(["pro"]), group(dims=[EMAIL]), include="ANY"), {"e1", "e3", "e6"}),
    ("include NONE", grouped(group(["pro"]), group(dims=[EMAIL]), include="NONE"), {"e2", "e4", "e5"}),
    ("no groups = all endpoints", grouped(), ALL),
    # nesting, and Dimensions beside groups
    ("nested source", grouped(group(["pro-email"])), {"e3"}),
    ("source nested two deep", grouped(group(["nested2", "android"])), {"e2", "e3", "e4"}),
    ("dimensions AND groups", grouped(group(["pro"]), Dimensions=ACTIVE_7), {"e1"}),
    ("dimensions only", {"Id": "plain", "Dimensions": EMAIL}, {"e3", "e6"}),
    ("neither", {"Id": "plain"}, ALL),
]


@pytest.mark.parametrize(("segment", "expected"), [c[1:] for c in GROUP_CASES], ids=[c[0] for c in GROUP_CASES])
def test_segment_groups(segment: dict[str, Any], expected: set[str]) -> None:
    assert audience(compile_segment(segment, now=NOW, load_segment=load)) == expected


def test_each_source_is_loaded_once() -> None:
    calls: list[tuple[str, int | None]] = []

    def counting(segment_id: str, version: int | None) -> dict[str, Any]:
        calls.append((segment_id, version))
        return load(segment_id, version)

    segment = grouped(group(["pro", "android"]), group(["pro"], [EMAIL]), group(["pro-email"]), include="ANY")
    assert audience(compile_segment(segment, now=NOW, load_segment=counting)) == {"e1", "e2", "e3", "e4"}
    assert sorted(calls) == [("android", None), ("pro", None), ("pro-email", None)]


def chain(length: int) -> dict[str, dict[str, Any]]:
    """c1 -> c2 -> ... -> c<length>, the last one a plain dimensional segment (e1 e3)."""
    segments = {f"c{i}": grouped(group([f"c{i + 1}"]), Id=f"c{i}") for i in range(1, length)}
    segments[f"c{length}"] = {"Id": f"c{length}", "Dimensions": PRO}
    return segments


def test_nesting_up_to_the_limit_compiles() -> None:
    segments = chain(MAX_SOURCE_DEPTH)
    predicate = compile_segment(grouped(group(["c1"])), now=NOW, load_segment=lambda i, v: segments[i])
    assert audience(predicate) == {"e1", "e3"}


@pytest.mark.parametrize(
    "segments",
    [
        chain(MAX_SOURCE_DEPTH + 1),
        {"c1": grouped(group(["c2"]), Id="c1"), "c2": grouped(group(["c1"]), Id="c2")},
        {"c1": grouped(group(["c1"]), Id="c1")},
        {"c1": grouped(group(["pro"]), group(["c2"]), Id="c1"), "c2": grouped(group(dims=[US]), group(["c1"]))},
    ],
    ids=["too deep", "two-segment cycle", "self cycle", "cycle in a later group"],
)
def test_cycles_raise(segments: dict[str, dict[str, Any]]) -> None:
    def loader(segment_id: str, version: int | None) -> dict[str, Any]:
        return segments.get(segment_id) or load(segment_id, version)

    with pytest.raises(ValueError, match="nest deeper"):
        compile_segment(grouped(group(["c1"])), now=NOW, load_segment=loader)


def test_unknown_combinator_raises() -> None:
    with pytest.raises(ValueError, match="Include"):
        compile_segment(grouped(group(["pro"]), include="SOME"), now=NOW, load_segment=load)
    with pytest.raises(ValueError, match="SourceType"):
        compile_segment(grouped(group(["pro"], SourceType="SOME")), now=NOW, load_segment=load)


# --- property: EXCLUSIVE is the complement of INCLUSIVE -------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c"])
WORDS = st.text(alphabet="xyZ", max_size=2)
VALUE_MAPS = st.dictionaries(NAMES, st.lists(WORDS, max_size=3), max_size=3)


@st.composite
def endpoints(draw: st.DrawFn) -> EndpointView:
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        doc["Attributes"] = draw(VALUE_MAPS)
    if draw(st.booleans()):
        doc["User"] = {"UserId": "u"}
        if draw(st.booleans()):
            doc["User"]["UserAttributes"] = draw(VALUE_MAPS)
    return EndpointView("e", doc, None)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(endpoints(), min_size=1, max_size=10),
    st.sampled_from(["Attributes", "UserAttributes"]),
    NAMES,
    st.lists(WORDS, max_size=3),
)
def test_exclusive_is_the_complement_of_inclusive(
    views: list[EndpointView], member: str, name: str, values: list[str]
) -> None:
    inclusive = compile_dimensions({member: {name: attr("INCLUSIVE", *values)}}, now=NOW)
    exclusive = compile_dimensions({member: {name: attr("EXCLUSIVE", *values)}}, now=NOW)
    for view in views:
        assert exclusive(view) is not inclusive(view)

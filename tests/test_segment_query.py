"""Segment evaluation in SQL (pointcast.segments.query) against the Python predicate that defines it.

Every dimension and group case of tests/test_segment_evaluate.py is evaluated by the store, SQLite and PostgreSQL,
over the same endpoints stored as the API stores them: the rows the selection is sure of must all be in the
audience, the audience must lie within the rows it may hold, and with the predicate asked about the rest the
audience must come out exactly. Criteria SQL can decide must be exact (no row asked). A hypothesis property does the
same for random endpoints and random segments, negations and groups included.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointcast.aws.wire import iso_ms
from pointcast.endpoints.repository import upsert
from pointcast.segments.evaluate import EndpointView, compile_segment
from pointcast.segments.query import METRIC_TOLERANCE, Selection, select_segment
from pointcast.settings import Settings
from pointcast.store import Database
from pointcast.store import models as m
from tests.conftest import postgres_url
from tests.support.server import PostgresSchema
from tests.test_segment_evaluate import (
    DIMENSION_CASES,
    ENDPOINTS,
    GROUP_CASES,
    NOW,
    attr,
    load,
    metric,
    recency,
    setdim,
)

_apps = itertools.count()


@pytest.fixture(scope="module")
def store(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    schema = PostgresSchema(postgres_url()) if backend == "postgres" else None
    url = schema.url if schema else None
    settings_ = Settings(data_dir=Path(tmp_path_factory.mktemp("segment-query")), database_url=url)
    db = Database(settings_.resolved_database_url())
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        if schema:
            schema.drop()


def put(db: Database, views: list[EndpointView]) -> str:
    """Store ``views`` in a new app, the columns as the API writes them; returns the app id."""
    app_id = f"app{next(_apps)}"
    rows = []
    for view in views:
        doc = {"EndpointStatus": "ACTIVE", "OptOut": "NONE", **view.doc}
        last = view.last_active
        active = iso_ms(last if last is None or last.tzinfo else last.replace(tzinfo=UTC)) if last else None
        rows.append(
            (
                app_id,
                view.id,
                None,
                doc.get("ChannelType"),
                doc["EndpointStatus"],
                doc["OptOut"],
                None,
                orjson.dumps(doc).decode(),
                (doc.get("Demographic") or {}).get("Timezone"),
                active,
            )
        )
    with db.write() as conn:
        upsert(conn, rows)
    return app_id


def no_imports(segment: dict[str, Any]) -> Any:
    raise AssertionError("no IMPORT segment here")


def evaluate(db: Database, app_id: str, segment: dict[str, Any], views: list[EndpointView]) -> dict[str, Any]:
    """The store's view of ``segment``: the selection, the sure / maybe / asked ids, and the audience."""
    with db.read() as conn:
        selection = select_segment(segment, dialect=conn.dialect.name, now=NOW, load_segment=load, imported=no_imports)
        e = m.endpoints
        rows = conn.execute(
            sa.select(e.c.id, selection.sure.label("sure")).where(e.c.app_id == app_id, selection.maybe)
        ).all()
    predicate = compile_segment(segment, now=NOW, load_segment=load)
    by_id = {view.id: view for view in views}
    sure = {row.id for row in rows if row.sure}
    maybe = {row.id for row in rows}
    asked = maybe - sure
    chosen = sure | {i for i in asked if predicate(by_id[i])}
    return {"selection": selection, "sure": sure, "maybe": maybe, "asked": asked, "audience": chosen}


def check(result: dict[str, Any], expected: set[str]) -> None:
    assert result["sure"] <= expected <= result["maybe"]
    assert result["audience"] == expected
    if result["selection"].exact:
        assert result["asked"] == set()


DATES = {"BEFORE", "AFTER", "ON", "BETWEEN"}


def decidable(dimensions: dict[str, Any]) -> bool:
    """Whether SQL alone must decide ``dimensions`` (see the module docstring of pointcast.segments.query)."""
    for member in ("Attributes", "UserAttributes"):
        for dimension in (dimensions.get(member) or {}).values():
            if dimension.get("AttributeType") in DATES and dimension.get("Values"):
                return False
    demographic = dimensions.get("Demographic") or {}
    if demographic.get("Platform") or demographic.get("DeviceType"):
        return False
    if (dimensions.get("Location") or {}).get("GPSPoint"):
        return False
    return all(not metric["Value"] for metric in (dimensions.get("Metrics") or {}).values())


@pytest.fixture(scope="module")
def handmade(store: Database) -> str:
    return put(store, ENDPOINTS)


@pytest.mark.parametrize(
    ("dimensions", "expected"), [c[1:] for c in DIMENSION_CASES], ids=[c[0] for c in DIMENSION_CASES]
)
def test_dimensions(store: Database, handmade: str, dimensions: dict[str, Any], expected: set[str]) -> None:
    result = evaluate(store, handmade, {"Id": "s", "Dimensions": dimensions}, ENDPOINTS)
    check(result, expected)
    if decidable(dimensions):
        assert result["selection"].exact


@pytest.mark.parametrize(("segment", "expected"), [c[1:] for c in GROUP_CASES], ids=[c[0] for c in GROUP_CASES])
def test_segment_groups(store: Database, handmade: str, segment: dict[str, Any], expected: set[str]) -> None:
    check(evaluate(store, handmade, segment, ENDPOINTS), expected)


def test_sql_decides_what_it_can_and_asks_about_the_rest(store: Database) -> None:
    """Folded case is exact for ASCII values only; a metric near its bound and a date are asked."""
    kelvin = "\u212aINDLE"  # KELVIN SIGN: casefold() makes it "kindle", SQL's lower() does not
    views = [
        EndpointView("a", {"Demographic": {"Platform": "Kindle"}, "Metrics": {"m": 1.0}}, None),
        EndpointView("b", {"Demographic": {"Platform": kelvin}, "Metrics": {"m": 1.0 + 1e-15}}, None),
        EndpointView("c", {"Demographic": {"Platform": "ios"}, "Metrics": {"m": 2.0}}, None),
        EndpointView("d", {"Attributes": {"day": ["2024-01-01"]}}, None),
        EndpointView("e", {"Attributes": {"day": ["soon"]}}, None),
    ]
    app_id = put(store, views)

    platform = evaluate(store, app_id, {"Dimensions": {"Demographic": {"Platform": setdim("KINDLE")}}}, views)
    assert (platform["sure"], platform["asked"], platform["audience"]) == ({"a"}, {"b"}, {"a", "b"})
    excluded = {"Dimensions": {"Demographic": {"Platform": setdim("KINDLE", kind="EXCLUSIVE")}}}
    other = evaluate(store, app_id, excluded, views)
    assert (other["sure"], other["asked"], other["audience"]) == ({"c", "d", "e"}, {"b"}, {"c", "d", "e"})

    above = evaluate(store, app_id, {"Dimensions": metric("GREATER_THAN", 1.0, name="m")}, views)
    assert (above["sure"], above["asked"], above["audience"]) == ({"c"}, {"a", "b"}, {"b", "c"})
    assert METRIC_TOLERANCE > 1e-15  # b is asked because it is that close, and the predicate says it is above

    dated = evaluate(store, app_id, {"Dimensions": {"Attributes": {"day": attr("ON", "2024-01-01")}}}, views)
    assert (dated["sure"], dated["maybe"], dated["audience"]) == (set(), {"d", "e"}, {"d"})


# --- property: the store and the predicate agree -------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", 'q"t', "x.y"])
WORDS = st.sampled_from(["", "x", "xy", "Y", "é", "\u212a", "2024-01-01", "2024-01-02T05:00:00+01:00"])
VALUE_MAPS = st.dictionaries(NAMES, st.lists(WORDS, max_size=3), max_size=3)
PLATFORMS = st.sampled_from(["ios", "IOS", "Android", "k", "\u212a", "é", "É"])
NUMBERS = st.sampled_from([0.0, -1.0, 1.0, 2.5, 10, 1.0 + 1e-15, 1e300])


@st.composite
def stored(draw: st.DrawFn, index: int) -> EndpointView:
    doc: dict[str, Any] = {"ChannelType": draw(st.sampled_from(["EMAIL", "SMS", "CUSTOM"]))}
    if draw(st.booleans()):
        doc["Attributes"] = draw(VALUE_MAPS)
    if draw(st.booleans()):
        doc["User"] = {"UserId": "u", "UserAttributes": draw(VALUE_MAPS)}
    if draw(st.booleans()):
        doc["Demographic"] = {"Platform": draw(PLATFORMS), "Make": draw(st.sampled_from(["Apple", "apple"]))}
    if draw(st.booleans()):
        doc["Metrics"] = draw(st.dictionaries(st.sampled_from(["m", "n"]), NUMBERS, max_size=2))
    if draw(st.booleans()):
        doc["Location"] = {"Country": draw(st.sampled_from(["US", "FR"]))}
        if draw(st.booleans()):
            doc["Location"] |= {"Latitude": draw(st.floats(-90, 90)), "Longitude": draw(st.floats(-180, 180))}
    ago = draw(st.one_of(st.none(), st.integers(0, 40 * 24 * 3600 * 1000)))
    last = None if ago is None else NOW - timedelta(milliseconds=ago)
    return EndpointView(f"e{index:02d}", doc, last)


def criterion() -> st.SearchStrategy[dict[str, Any]]:
    attribute = st.builds(
        attr, st.sampled_from(["INCLUSIVE", "EXCLUSIVE", "CONTAINS", "BEFORE", "AFTER", "ON", "BETWEEN", None])
    ).flatmap(lambda a: st.lists(WORDS, max_size=3).map(lambda values: {**a, "Values": values}))
    member = st.sampled_from(["Attributes", "UserAttributes"])
    return st.one_of(
        st.tuples(member, NAMES, attribute).map(lambda t: {t[0]: {t[1]: t[2]}}),
        st.tuples(
            st.sampled_from(["Platform", "DeviceType", "Make", "Channel"]),
            st.lists(st.sampled_from(["ios", "IOS", "k", "K", "é", "É", "Apple", "EMAIL"]), max_size=2),
            st.sampled_from([None, "EXCLUSIVE"]),
        ).map(lambda t: {"Demographic": {t[0]: setdim(*t[1], kind=t[2])}}),
        st.tuples(
            st.sampled_from(["GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN", "LESS_THAN_OR_EQUAL", "EQUAL"]),
            NUMBERS,
            st.sampled_from(["m", "n"]),
        ).map(lambda t: metric(t[0], t[1], name=t[2])),
        st.tuples(st.sampled_from(["HR_24", "DAY_7", "DAY_14", "DAY_30"]), st.sampled_from(["ACTIVE", "INACTIVE"])).map(
            lambda t: recency(*t)
        ),
        st.tuples(st.floats(-90, 90), st.floats(-180, 180), st.sampled_from([None, 0, 500.0, 5000.0])).map(
            lambda t: {
                "Location": {
                    "GPSPoint": {
                        "Coordinates": {"Latitude": t[0], "Longitude": t[1]},
                        **({} if t[2] is None else {"RangeInKilometers": t[2]}),
                    }
                }
            }
        ),
    )


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Criteria of different members in one SegmentDimensions (a later one of the same member wins)."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


DIMENSIONS = st.lists(criterion(), min_size=0, max_size=3).map(merged)
SEGMENTS = st.one_of(
    DIMENSIONS.map(lambda d: {"Id": "s", "Dimensions": d}),
    st.tuples(
        st.lists(st.tuples(st.lists(DIMENSIONS, max_size=3), st.sampled_from(["ALL", "ANY", "NONE"])), max_size=3),
        st.sampled_from(["ALL", "ANY", "NONE"]),
    ).map(
        lambda t: {
            "Id": "s",
            "SegmentGroups": {"Include": t[1], "Groups": [{"Dimensions": dims, "Type": how} for dims, how in t[0]]},
        }
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), SEGMENTS)
def test_the_store_agrees_with_the_predicate(store: Database, data: st.DataObject, segment: dict[str, Any]) -> None:
    views = [data.draw(stored(i)) for i in range(data.draw(st.integers(1, 8)))]
    app_id = put(store, views)
    predicate = compile_segment(segment, now=NOW, load_segment=load)
    expected = {view.id for view in views if predicate(view)}
    check(evaluate(store, app_id, segment, views), expected)


def test_a_selection_of_nothing_or_everything_needs_no_sql() -> None:
    every = select_segment({"Id": "s"}, dialect="sqlite", now=NOW, load_segment=load, imported=no_imports)
    nothing = select_segment(
        {"Id": "s", "Dimensions": {"Attributes": {"a": attr("INCLUSIVE")}}},
        dialect="sqlite",
        now=NOW,
        load_segment=load,
        imported=no_imports,
    )
    assert isinstance(every, Selection) and every.exact and str(every.maybe) == "true"
    assert nothing.exact and str(nothing.maybe) == "false"


def test_recency_rounds_the_cutoff_up_to_the_stored_millisecond(store: Database) -> None:
    """last_active has milliseconds; a cutoff with microseconds must not let the millisecond before it in."""
    now = NOW + timedelta(microseconds=123_456)
    cutoff = now - timedelta(days=7)
    views = [
        EndpointView("before", {}, cutoff.replace(microsecond=123_000)),
        EndpointView("after", {}, cutoff.replace(microsecond=124_000)),
    ]
    app_id = put(store, views)
    segment = {"Id": "s", "Dimensions": recency("DAY_7", "ACTIVE")}
    with store.read() as conn:
        selection = select_segment(segment, dialect=conn.dialect.name, now=now, load_segment=load, imported=no_imports)
        e = m.endpoints
        ids = set(conn.scalars(sa.select(e.c.id).where(e.c.app_id == app_id, selection.maybe)))
    predicate = compile_segment(segment, now=now, load_segment=load)
    assert selection.exact
    assert ids == {v.id for v in views if predicate(v)} == {"after"}


def test_long_lists_of_values_and_dimensions_are_evaluated_on_both_stores(store: Database) -> None:
    """SQLite refuses an expression tree deeper than 1,000, and ``a OR b OR c …`` is as deep as its terms: a
    CONTAINS of 500 values, or a group of 1,100 dimensions matching ANY, made planning fail at every tick (the run
    stayed PLANNING). The terms are now nested in halves, on both stores alike."""
    views = [EndpointView(f"e{i}", {"Attributes": {"code": [f"x-{i:04d}-y"]}}, None) for i in range(1500)]
    app_id = put(store, views)
    needles = [f"-{i:04d}-" for i in range(0, 1500, 2)]
    contains = {"Attributes": {"code": {"AttributeType": "CONTAINS", "Values": needles}}}
    result = evaluate(store, app_id, {"Id": "s", "Dimensions": contains}, views)
    check(result, {f"e{i}" for i in range(0, 1500, 2)})
    dimensions = [{"Attributes": {"code": {"Values": [f"x-{i:04d}-y"]}}} for i in range(1100)]
    group = {"Id": "g", "SegmentGroups": {"Include": "ALL", "Groups": [{"Type": "ANY", "Dimensions": dimensions}]}}
    check(evaluate(store, app_id, group, views), {f"e{i}" for i in range(1100)})


def test_an_on_date_at_the_edge_of_the_calendar_matches_nothing(store: Database) -> None:
    """0001-01-01T00:00:00+01:00 is in year 0 in UTC: its day could not be worked out, and planning failed at every
    tick. It is on no day (BEFORE and AFTER already compared such values without converting them)."""
    views = [
        EndpointView("edge", {"Attributes": {"d": ["0001-01-01T00:00:00+01:00"]}}, None),
        EndpointView("far", {"Attributes": {"d": ["9999-12-31T23:00:00-05:00"]}}, None),
        EndpointView("day", {"Attributes": {"d": ["2024-01-01T08:00:00Z"]}}, None),
    ]
    app_id = put(store, views)
    on = {"Attributes": {"d": {"AttributeType": "ON", "Values": ["2024-01-01"]}}}
    check(evaluate(store, app_id, {"Id": "s", "Dimensions": on}, views), {"day"})
    edge = {"Attributes": {"d": {"AttributeType": "ON", "Values": ["0001-01-01T00:00:00+01:00"]}}}
    check(evaluate(store, app_id, {"Id": "s", "Dimensions": edge}, views), set())

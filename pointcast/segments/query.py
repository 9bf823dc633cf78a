"""Segment evaluation in SQL: a segment compiled into two conditions on the ``endpoints`` table.

:mod:`pointcast.segments.evaluate` is the definition of who is in a segment: a predicate over one endpoint's parsed
definition. Planning a run with only that predicate would read and parse every endpoint of the app. This module
compiles the same segment into SQL the store evaluates while it reads, so endpoints outside the segment never
leave the database and those certainly inside it are not parsed at all:

* ``sure``: true only for endpoints in the segment;
* ``maybe``: true for every endpoint in the segment (``sure`` implies ``maybe``).

Planning reads the rows where ``maybe`` holds; a row where ``sure`` holds is in, any other is asked the Python
predicate. Where SQL says exactly what the predicate says, the two are one expression (``exact``) and no row is
asked. Where it cannot, or not exactly, it narrows: NOT swaps the two (not ``maybe`` is sure, not ``sure`` is maybe),
AND and OR combine each side, and a criterion SQL cannot decide is sure nowhere and maybe everywhere.

Which criteria are exact, on SQLite (JSON1) and PostgreSQL (jsonb) alike:

* Attributes / UserAttributes INCLUSIVE, EXCLUSIVE, CONTAINS (``instr`` / ``strpos``: case-sensitive substrings);
  the dates (BEFORE, AFTER, ON, BETWEEN) are not: SQL cannot read ISO 8601 as Python's ``fromisoformat`` does, so
  ``maybe`` is "has the attribute" and the predicate decides. An attribute name SQLite's JSON path cannot spell
  (one with ``"``, ``\\`` or a control character) is left to the predicate too.
* Demographic AppVersion, Make, Model, Location.Country and Channel (the ``channel_type`` column); Platform and
  DeviceType fold case: ``lower`` (ASCII letters only, the C collation on PostgreSQL) decides for ASCII values and
  for any value it finds, a value with other characters it does not find is asked the predicate.
* Metrics: the store may read a JSON number one unit in the last place away from Python's reading, so a value
  within a relative 1e-12 of the bound is asked the predicate (exact when the bound is 0).
* Behavior.Recency on the ``last_active`` column (canonical ISO text, compared as text against the cutoff rounded
  up to the millisecond).
* Location.GPSPoint: ``maybe`` is the band of latitudes the range can reach; the distance is the predicate's.
* IMPORT segments (the campaign's own or a SourceSegment): membership in the ``import_members`` rows of the job
  that defined the version, a subquery, so no member list is held in memory.

On PostgreSQL the conditions read the jsonb copy of each definition the store keeps beside its text (``doc_json``, a
generated column); SQLite's JSON1 reads the text. The stored values are those the API validated (attribute values
are lists of strings, metrics numbers, the Demographic and Location members strings), which is what the SQL relies
on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from pointcast.aws.wire import iso_ms
from pointcast.segments.evaluate import (
    DEFAULT_GPS_RANGE_KM,
    EARTH_RADIUS_KM,
    RECENCY_DURATIONS,
    LoadSegment,
    source_step,
)
from pointcast.store import models as m

__all__ = ["METRIC_TOLERANCE", "Selection", "select_segment"]

Condition = sa.ColumnElement[bool]

_TRUE: Condition = sa.true()
_FALSE: Condition = sa.false()

METRIC_TOLERANCE = 1e-12
"""Relative distance from a Metrics bound within which the Python predicate decides."""

_e = m.endpoints


@dataclass(frozen=True)
class Selection:
    """A segment as SQL: ``sure`` implies in the segment, in the segment implies ``maybe``; ``exact`` when the two
    are the same condition (then no row needs the Python predicate)."""

    sure: Condition
    maybe: Condition
    exact: bool

    @classmethod
    def of(cls, condition: Condition) -> Selection:
        return cls(condition, condition, True)


_ALL = Selection(_TRUE, _TRUE, True)
_NONE = Selection(_FALSE, _FALSE, True)
_UNKNOWN = Selection(_FALSE, _TRUE, False)


_FLAT = 64  # terms joined in one flat list; longer lists are nested (_balanced)


def _and(conditions: list[Condition]) -> Condition:
    if any(c is _FALSE for c in conditions):
        return _FALSE
    kept = [c for c in conditions if c is not _TRUE]
    return _TRUE if not kept else kept[0] if len(kept) == 1 else _balanced(sa.and_, kept)


def _or(conditions: list[Condition]) -> Condition:
    if any(c is _TRUE for c in conditions):
        return _TRUE
    kept = [c for c in conditions if c is not _FALSE]
    return _FALSE if not kept else kept[0] if len(kept) == 1 else _balanced(sa.or_, kept)


def _balanced(join: Callable[..., Condition], terms: list[Condition]) -> Condition:
    """``join(*terms)``, nested in halves past _FLAT terms: SQLite parses ``a OR b OR c …`` into a tree as deep as
    its terms, and refuses one deeper than 1,000 ("Expression tree is too large"), which a CONTAINS of 500 values
    reached. SQLAlchemy flattens a list joined inside another (grouped or not) back into one, so each half is
    wrapped in ``coalesce(half, NULL)``, which is the half itself in every case, NULL included."""
    if len(terms) <= _FLAT:
        return join(*terms)
    middle = len(terms) // 2
    halves = (_balanced(join, terms[:middle]), _balanced(join, terms[middle:]))
    return join(*(sa.func.coalesce(half, sa.null(), type_=sa.Boolean) for half in halves))


def _not(condition: Condition) -> Condition:
    return _FALSE if condition is _TRUE else _TRUE if condition is _FALSE else sa.not_(condition)


def all_of(selections: list[Selection]) -> Selection:
    if any(s is _NONE for s in selections):
        return _NONE
    sure = _and([s.sure for s in selections])
    if all(s.exact for s in selections):
        return Selection.of(sure)
    return Selection(sure, _and([s.maybe for s in selections]), False)


def any_of(selections: list[Selection]) -> Selection:
    if any(s is _ALL for s in selections):
        return _ALL
    sure = _or([s.sure for s in selections])
    if all(s.exact for s in selections):
        return Selection.of(sure)
    return Selection(sure, _or([s.maybe for s in selections]), False)


def none_of(selections: list[Selection]) -> Selection:
    either = any_of(selections)
    if either.exact:
        return Selection.of(_not(either.sure))
    return Selection(_not(either.maybe), _not(either.sure), False)


def _combine(how: str, selections: list[Selection]) -> Selection:
    return {"ALL": all_of, "ANY": any_of, "NONE": none_of}[how](selections)


def _known(condition: Condition) -> Condition:
    """``condition`` with SQL's unknown (NULL, from a missing member) read as false, so NOT means "not in"."""
    return sa.func.coalesce(condition, _FALSE)


# --- reading the stored definition ---------------------------------------------------------------------------------


def _sqlite_path(path: tuple[str, ...]) -> str | None:
    """A JSON path for SQLite's JSON1 functions, or None when a label cannot be spelled in one."""
    if any('"' in p or "\\" in p or any(ord(ch) < 0x20 for ch in p) for p in path):
        return None
    return "$" + "".join(f'."{p}"' for p in path)


class _Json:
    """Reading members of ``endpoints.doc`` (JSON text) in one dialect's SQL."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        # PostgreSQL: the jsonb copy of the definition the store keeps (migration 0007), parsed once per write.
        self.doc: Any = sa.literal_column("endpoints.doc_json", JSONB) if self.postgres else _e.c.doc

    def _jsonb(self, path: tuple[str, ...]) -> Any:
        return sa.func.jsonb_extract_path(self.doc, *[sa.literal(p) for p in path])

    def text(self, path: tuple[str, ...]) -> Any | None:
        """The string at ``path`` (SQL NULL when missing), or None when it cannot be read in SQL."""
        if self.postgres:
            return sa.func.jsonb_extract_path_text(self.doc, *[sa.literal(p) for p in path])
        spelled = _sqlite_path(path)
        return None if spelled is None else sa.func.json_extract(self.doc, spelled)

    def number(self, path: tuple[str, ...]) -> Any | None:
        """The number at ``path`` as a double (NULL when missing or not a number)."""
        if self.postgres:
            number = sa.cast(sa.func.jsonb_extract_path_text(self.doc, *[sa.literal(p) for p in path]), sa.Float)
            return sa.case((sa.func.jsonb_typeof(self._jsonb(path)) == "number", number))
        spelled = _sqlite_path(path)
        if spelled is None:
            return None
        return sa.case(
            (sa.func.json_type(self.doc, spelled).in_(("integer", "real")), sa.func.json_extract(self.doc, spelled))
        )

    def has_any(self, path: tuple[str, ...], values: list[str]) -> Condition | None:
        """The list at ``path`` has one of ``values`` (SQL NULL when there is no list)."""
        if self.postgres:
            return self._jsonb(path).op("?|")(postgresql.array(values))  # type: ignore[no-any-return]
        return self.any_string(path, lambda value: value.in_(values))

    def any_string(self, path: tuple[str, ...], test: Callable[[Any], Condition]) -> Condition | None:
        """EXISTS an element of the list at ``path`` for which ``test(element)`` holds."""
        if self.postgres:
            value = self._jsonb(path)
            array = sa.case((sa.func.jsonb_typeof(value) == "array", value), else_=sa.cast(sa.literal("[]"), JSONB))
            elements = sa.func.jsonb_array_elements_text(array).table_valued("value")
            return sa.exists().select_from(elements).where(test(elements.c.value))
        spelled = _sqlite_path(path)
        if spelled is None:
            return None
        elements = sa.func.json_each(self.doc, spelled).table_valued("value")
        return sa.exists().select_from(elements).where(test(elements.c.value))

    def contains(self, haystack: Any, needle: str) -> Condition:
        if self.postgres:
            return sa.func.strpos(haystack, needle) > 0
        return sa.func.instr(haystack, needle) > 0

    def ascii(self, value: Any) -> Condition:
        """True when the text ``value`` has only ASCII characters."""
        if self.postgres:
            return sa.func.octet_length(value) == sa.func.char_length(value)
        return sa.func.length(value) == sa.func.length(sa.cast(value, sa.LargeBinary))

    def lower(self, value: Any) -> Any:
        """ASCII letters lowered, whatever the database's locale."""
        return sa.func.lower(value.collate("C") if self.postgres else value)


# --- criteria ------------------------------------------------------------------------------------------------------


def _instant(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class _Compiler:
    def __init__(self, dialect: str, now: datetime, load_segment: LoadSegment, imported: Imported) -> None:
        self.json = _Json(dialect)
        self.now = now if now.tzinfo else now.replace(tzinfo=UTC)
        self.load_segment = load_segment
        self.imported = imported
        self.compiled: dict[tuple[str, int | None], Selection] = {}

    def attribute(self, path: tuple[str, ...], dimension: dict[str, Any]) -> Selection:
        kind = dimension.get("AttributeType") or "INCLUSIVE"
        values = list(dimension.get("Values") or ())
        if kind in ("INCLUSIVE", "EXCLUSIVE"):
            if not values:
                found: Selection = _NONE
            else:
                condition = self.json.has_any(path, values)
                found = _UNKNOWN if condition is None else Selection.of(_known(condition))
            return found if kind == "INCLUSIVE" else none_of([found])
        if kind == "CONTAINS":
            if not values:
                return _NONE
            condition = self.json.any_string(path, lambda value: _or([self.json.contains(value, n) for n in values]))
            return _UNKNOWN if condition is None else Selection.of(condition)
        wanted = 2 if kind == "BETWEEN" else 1
        bounds = [_instant(v) for v in values[:wanted]]
        if len(bounds) < wanted or any(b is None for b in bounds):
            return _NONE
        present = self.json.any_string(path, lambda value: _TRUE)
        return Selection(_FALSE, _TRUE if present is None else present, False)

    def attributes(self, path: tuple[str, ...], dimensions: dict[str, Any] | None) -> list[Selection]:
        return [self.attribute((*path, name), dimension) for name, dimension in (dimensions or {}).items()]

    def set(self, value: Any, dimension: dict[str, Any] | None, *, fold: bool = False) -> Selection:
        if dimension is None:
            return _ALL
        values = list(dimension.get("Values") or ())
        if not values:
            found = _NONE
        elif value is None:
            found = _UNKNOWN
        elif not fold:
            found = Selection.of(_known(value.in_(values)))
        else:
            # lower() folds ASCII letters only; where its result is one of the folded values, so is casefold()'s
            # (casefold of a string lower() left unchanged outside ASCII is that string). Other values are asked.
            lowered = _known(self.json.lower(value).in_(sorted({str(v).casefold() for v in values})))
            other = _known(sa.and_(value.is_not(None), sa.not_(self.json.ascii(value))))
            found = Selection(lowered, sa.or_(lowered, other), False)
        if (dimension.get("DimensionType") or "INCLUSIVE") == "INCLUSIVE":
            return found
        return none_of([found])

    def demographic(self, demographic: dict[str, Any] | None) -> list[Selection]:
        if not demographic:
            return []
        text = self.json.text
        return [
            self.set(text(("Demographic", "AppVersion")), demographic.get("AppVersion")),
            self.set(_e.c.channel_type, demographic.get("Channel")),
            self.set(text(("Demographic", "Platform")), demographic.get("DeviceType"), fold=True),
            self.set(text(("Demographic", "Make")), demographic.get("Make")),
            self.set(text(("Demographic", "Model")), demographic.get("Model")),
            self.set(text(("Demographic", "Platform")), demographic.get("Platform"), fold=True),
        ]

    def gps(self, dimension: dict[str, Any]) -> Selection:
        coordinates = dimension.get("Coordinates") or {}
        latitude0 = float(coordinates["Latitude"])
        km = dimension.get("RangeInKilometers")
        reach = (DEFAULT_GPS_RANGE_KM if km is None else float(km)) + 1e-6  # the predicate's tolerance, and more
        if reach < 0:
            return _NONE
        degrees = math.degrees(reach / EARTH_RADIUS_KM)
        latitude = self.json.number(("Location", "Latitude"))
        longitude = self.json.number(("Location", "Longitude"))
        assert latitude is not None and longitude is not None
        band = sa.and_(
            latitude.is_not(None),
            longitude.is_not(None),
            latitude.between(latitude0 - degrees - 1e-6, latitude0 + degrees + 1e-6),
        )
        return Selection(_FALSE, _known(band), False)

    def location(self, location: dict[str, Any] | None) -> list[Selection]:
        if not location:
            return []
        checks = [self.set(self.json.text(("Location", "Country")), location.get("Country"))]
        if location.get("GPSPoint") is not None:
            checks.append(self.gps(location["GPSPoint"]))
        return checks

    def metric(self, name: str, dimension: dict[str, Any]) -> Selection:
        value = self.json.number(("Metrics", name))
        if value is None:
            return _UNKNOWN
        target = float(dimension["Value"])
        slack = abs(target) * METRIC_TOLERANCE
        low, high = target - slack, target + slack
        op = dimension.get("ComparisonOperator")
        if op == "EQUAL":
            if not slack:
                return Selection.of(_known(value == target))
            return Selection(_FALSE, _known(value.between(low, high)), False)
        sure, maybe = {
            "GREATER_THAN": (value > high, value > low),
            "GREATER_THAN_OR_EQUAL": (value >= high, value >= low),
            "LESS_THAN": (value < low, value < high),
            "LESS_THAN_OR_EQUAL": (value <= low, value <= high),
        }[str(op)]
        if not slack:
            return Selection.of(_known(sure))
        return Selection(_known(sure), _known(maybe), False)

    def recency(self, recency: dict[str, Any]) -> Selection:
        cutoff = self.now - RECENCY_DURATIONS[recency["Duration"]]
        if cutoff.microsecond % 1000:  # last_active has milliseconds: ">= cutoff" is ">= the next millisecond"
            cutoff += timedelta(microseconds=1000 - cutoff.microsecond % 1000)
        active = Selection.of(_known(_e.c.last_active >= iso_ms(cutoff)))
        return active if recency["RecencyType"] == "ACTIVE" else none_of([active])

    def dimensions(self, dimensions: dict[str, Any] | None) -> Selection:
        dimensions = dimensions or {}
        checks: list[Selection] = []
        checks += self.attributes(("Attributes",), dimensions.get("Attributes"))
        checks += self.attributes(("User", "UserAttributes"), dimensions.get("UserAttributes"))
        checks += self.demographic(dimensions.get("Demographic"))
        checks += self.location(dimensions.get("Location"))
        checks += [self.metric(name, metric) for name, metric in (dimensions.get("Metrics") or {}).items()]
        recency = (dimensions.get("Behavior") or {}).get("Recency")
        if recency is not None:
            checks.append(self.recency(recency))
        return all_of(checks)

    def segment(self, segment: dict[str, Any], chain: tuple[str, ...]) -> Selection:
        if segment.get("SegmentType") == "IMPORT":
            return Selection.of(self.imported(segment))
        checks: list[Selection] = []
        if segment.get("Dimensions"):
            checks.append(self.dimensions(segment["Dimensions"]))
        if segment.get("SegmentGroups"):
            checks.append(self.groups(segment["SegmentGroups"], chain))
        return all_of(checks)

    def groups(self, group_list: dict[str, Any], chain: tuple[str, ...]) -> Selection:
        groups = group_list.get("Groups") or []
        if not groups:
            return _ALL
        compiled = [self.group(group, chain) for group in groups]
        return _combine(group_list.get("Include") or "ALL", compiled)

    def group(self, group: dict[str, Any], chain: tuple[str, ...]) -> Selection:
        sources = [self.source(reference, chain) for reference in group.get("SourceSegments") or []]
        base = _combine(group.get("SourceType") or "ANY", sources) if sources else _ALL
        dimensions = [self.dimensions(d) for d in group.get("Dimensions") or []]
        filtered = _combine(group.get("Type") or "ANY", dimensions) if dimensions else _ALL
        return all_of([base, filtered])

    def source(self, reference: dict[str, Any], chain: tuple[str, ...]) -> Selection:
        key, path = source_step(reference, chain)
        if key not in self.compiled:
            self.compiled[key] = self.segment(self.load_segment(*key), path)
        return self.compiled[key]


Imported = Callable[[dict[str, Any]], Condition]
"""The members of an IMPORT segment (a SegmentResponse) as a condition on ``endpoints`` (a subquery)."""


def select_segment(
    segment: dict[str, Any], *, dialect: str, now: datetime, load_segment: LoadSegment, imported: Imported
) -> Selection:
    """The :class:`Selection` of a SegmentResponse (its Dimensions AND its SegmentGroups, or its imported members),
    with the semantics of :func:`pointcast.segments.evaluate.compile_segment`, which validates the segment first
    (this assumes a segment that compiles there). ``dialect`` is the SQLAlchemy dialect name of the store."""
    root = segment.get("Id") or "<segment>"
    return _Compiler(dialect, now, load_segment, imported).segment(segment, (str(root),))

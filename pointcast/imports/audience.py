"""Who is in an IMPORT segment, for a campaign run.

An imported segment is a fixed list of endpoints: those the import job that defined its version wrote
(``segment_imports`` -> ``import_members``). In SQL (:mod:`pointcast.segments.query`) that is a subquery on
``import_members`` (:meth:`ImportedSegments.condition`): all a campaign whose segment is an IMPORT segment needs, and
all any segment needs where its SQL is exact. The Python predicate (:mod:`pointcast.segments.evaluate`), asked about
the rows a segment's SQL cannot decide, knows only dimensions and groups, so an IMPORT segment that is a
SourceSegment of a group reaches it this way: the load function handed to ``compile_segment`` is wrapped
(:meth:`ImportedSegments.loader`) so that it returns, for an IMPORT segment, a stand-in whose only dimension is an
attribute named ``\\x00pointcast:import:ID@VERSION`` INCLUSIVE ``["1"]``; the compiled predicate is then wrapped
(:meth:`ImportedSegments.marking`) so that each endpoint it is asked about carries that attribute exactly when it is
a member. Stored attribute names can never contain NUL (every write refuses it), so the stand-in matches nothing
else. The endpoint's stored document is not touched: members see a shallow copy.

Memory: only for that predicate, the member ids of each IMPORT segment version they use are held in a Python set
for the run's planning (about 100 bytes per member), loaded when the predicate is made.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.imports import repository as repo
from pointcast.segments.evaluate import EndpointView, LoadSegment, Predicate
from pointcast.store import models as m

MARK = "\x00pointcast:import:"
_MEMBER = ["1"]


def is_imported(segment: dict[str, Any]) -> bool:
    return segment.get("SegmentType") == "IMPORT"


class ImportedSegments:
    """The IMPORT segments one campaign run refers to, and their members."""

    def __init__(self, conn: sa.Connection, app_id: str) -> None:
        self.conn = conn
        self.app_id = app_id
        self.marks: dict[str, dict[str, Any]] = {}  # stand-in attribute name -> the IMPORT segment it stands for

    def members(self, segment: dict[str, Any]) -> frozenset[str]:
        return frozenset(repo.member_ids(self.conn, self.app_id, segment["Id"], segment["Version"]))

    def condition(self, segment: dict[str, Any]) -> sa.ColumnElement[bool]:
        """The members of an IMPORT segment as a condition on ``endpoints``: a subquery, nothing held in memory."""
        job_id = repo.defining_job(self.conn, self.app_id, segment["Id"], segment["Version"])
        if job_id is None:
            return sa.false()
        return m.endpoints.c.id.in_(repo.member_query(job_id))

    def loader(self, load: LoadSegment) -> LoadSegment:
        """``load``, with IMPORT segments replaced by their stand-ins."""

        def wrapped(segment_id: str, version: int | None) -> dict[str, Any]:
            segment: dict[str, Any] = load(segment_id, version)
            if not is_imported(segment):
                return segment
            name = f"{MARK}{segment['Id']}@{segment['Version']}"
            self.marks[name] = segment
            dimension = {"AttributeType": "INCLUSIVE", "Values": list(_MEMBER)}
            return {"Id": segment["Id"], "Dimensions": {"Attributes": {name: dimension}}}

        return wrapped

    def marking(self, predicate: Predicate) -> Predicate:
        """``predicate``, asked about endpoints that carry the stand-in attribute of each segment they belong to
        (the members of those segments are read now)."""
        if not self.marks:
            return predicate
        marks = tuple((name, self.members(segment)) for name, segment in self.marks.items())

        def check(view: EndpointView) -> bool:
            hits = {name: _MEMBER for name, members in marks if view.id in members}
            if hits:
                doc = view.doc
                view = EndpointView(
                    view.id, {**doc, "Attributes": {**(doc.get("Attributes") or {}), **hits}}, view.last_active
                )
            return predicate(view)

        return check

"""Reading an import file as a stream of endpoint definitions, in the two formats Pinpoint's import documents define.

``JSON``: newline-delimited JSON, one endpoint definition per line: the EndpointRequest members plus ``Id`` (botocore's
``EndpointBatchItem``). Blank lines are skipped.

``CSV``: a header row whose columns are dotted member paths (``ChannelType``, ``Address``, ``Id``,
``Location.Country``, ``Demographic.Platform``, ``Attributes.Interests``, ``User.UserId``,
``User.UserAttributes.FirstName``, ``Metrics.score``...), then one endpoint per row. An attribute cell holds one value,
or several separated by commas (quote the cell: ``"Cooking,Fishing"``), each stripped of surrounding blanks;
``Metrics.*`` and ``Location.Latitude``/``Longitude`` cells are numbers; an empty cell leaves the member out; rows
whose cells are all empty are skipped. The columns allowed are derived from the botocore model.

Both are read a line at a time, so memory is bounded by :data:`MAX_LINE`, not by the size of the file. A record that
cannot be read becomes a :class:`Record` with an ``error`` (and the next one is read); a file that cannot be read at
all (no header, an unknown column) raises :class:`FileError`.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, BinaryIO, Literal

import orjson

from pointcast.aws.shapes import service_model

MAX_LINE = 128 * 1024
"""The longest line read, in bytes (JSON) or characters (CSV); an endpoint is at most 15 KB."""

Kind = Literal["string", "number", "list"]


class FileError(Exception):
    """The file as a whole cannot be imported; the message says why."""


@dataclass(frozen=True, slots=True)
class Record:
    """One endpoint definition read from the file: the item, or why it could not be read. ``line`` is 1-based."""

    line: int
    item: dict[str, Any] | None
    error: str | None = None


def read(fmt: str, stream: BinaryIO) -> Iterator[Record]:
    """The records of ``stream`` in format ``fmt`` (``CSV`` or ``JSON``)."""
    if fmt == "JSON":
        return read_json(stream)
    if fmt == "CSV":
        return read_csv(stream)
    raise ValueError(f"unknown format {fmt!r}")


# --- JSON ----------------------------------------------------------------------------------------------------------


def read_json(stream: BinaryIO) -> Iterator[Record]:
    """Newline-delimited JSON: each non-blank line must be one JSON object."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            _skip_line(stream)
            yield Record(number, None, f"is longer than {MAX_LINE} bytes")
            continue
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield Record(number, None, f"is not valid JSON ({exc})")
            continue
        if not isinstance(value, dict):
            yield Record(number, None, f"must be a JSON object, not {_JSON_TYPES.get(type(value), 'a value')}")
            continue
        yield Record(number, value)


_JSON_TYPES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _skip_line(stream: BinaryIO) -> None:
    while True:
        rest = stream.readline(MAX_LINE)
        if not rest or rest.endswith(b"\n"):
            return


# --- CSV -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One header column: the member path it sets and how its cells are read."""

    name: str
    path: tuple[str, ...]
    kind: Kind


@cache
def _members() -> tuple[dict[str, tuple[tuple[str, ...], Kind]], dict[str, tuple[tuple[str, ...], Kind]]]:
    """From the model's EndpointBatchItem: exact column names, and column prefixes (maps: ``Attributes.`` ...)."""
    exact: dict[str, tuple[tuple[str, ...], Kind]] = {}
    prefixes: dict[str, tuple[tuple[str, ...], Kind]] = {}

    def visit(shape: Any, path: tuple[str, ...]) -> None:
        for name, member in shape.members.items():
            here = (*path, name)
            dotted = ".".join(here)
            if member.type_name == "string":
                exact[dotted] = (here, "string")
            elif member.type_name in ("double", "float", "integer", "long"):
                exact[dotted] = (here, "number")
            elif member.type_name == "structure":
                visit(member, here)
            elif member.type_name == "map":
                prefixes[dotted + "."] = (here, "list" if member.value.type_name == "list" else "number")

    visit(service_model("pinpoint").shape_for("EndpointBatchItem"), ())
    return exact, prefixes


def columns(header: list[str]) -> list[Column]:
    """The header row read as columns; raises FileError naming the first column that is not an endpoint member."""
    exact, prefixes = _members()
    found: list[Column] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(header, start=1):
        name = raw.strip()
        if name in seen:
            raise FileError(f"The CSV header names column '{name[:60]}' twice (columns {seen[name]} and {index})")
        seen[name] = index
        if name in exact:
            path, kind = exact[name]
            found.append(Column(name, path, kind))
            continue
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is None or name == prefix:
            raise FileError(
                f"The CSV header's column {index} '{name[:60]}' is not an endpoint member (columns are member paths "
                "such as ChannelType, Address, Id, Location.Country, Demographic.Platform, User.UserId, "
                f"{', '.join(p + 'NAME' for p in prefixes)})"
            )
        path, kind = prefixes[prefix]
        found.append(Column(name, (*path, name[len(prefix) :]), kind))
    return found


def item_from_row(cols: list[Column], cells: list[str]) -> dict[str, Any]:
    """The endpoint definition of one CSV row; raises ValueError naming a cell that is not a number."""
    item: dict[str, Any] = {}
    for column, cell in zip(cols, cells, strict=True):
        if column.kind == "string":
            if cell == "":
                continue
            value: Any = cell
        elif column.kind == "number":
            if not cell.strip():
                continue
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"{column.name} must be a number (got {cell[:40]!r})")
        else:
            value = [part.strip() for part in cell.split(",") if part.strip()]
            if not value:
                continue
        target = item
        for step in column.path[:-1]:
            target = target.setdefault(step, {})
        target[column.path[-1]] = value
    return item


class _LongLine(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Lines:
    """The lines of a text stream for csv.reader, at most MAX_LINE characters each, counted."""

    def __init__(self, text: io.TextIOBase) -> None:
        self.text = text
        self.count = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(MAX_LINE + 1)
        if not line:
            raise StopIteration
        self.count += 1
        if len(line) > MAX_LINE and not line.endswith(("\n", "\r")):
            while True:
                rest = self.text.readline(MAX_LINE)
                if not rest or rest.endswith(("\n", "\r")):
                    break
            raise _LongLine(self.count)
        return line


def _has_undecodable(cells: list[str]) -> bool:
    """Bytes that were not UTF-8 arrive as lone surrogates (``surrogateescape``), which do not encode."""
    try:
        "".join(cells).encode()
    except UnicodeEncodeError:
        return True
    return False


def read_csv(stream: BinaryIO) -> Iterator[Record]:
    """A header row of member paths, then one endpoint per row."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    lines = _Lines(text)
    reader = csv.reader(lines, strict=True)
    cols: list[Column] | None = None
    while True:
        start = lines.count + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except _LongLine as exc:
            if cols is None:
                raise FileError(f"The CSV header (line {exc.line}) is longer than {MAX_LINE} characters") from None
            yield Record(exc.line, None, f"is longer than {MAX_LINE} characters")
            continue
        except csv.Error as exc:
            if cols is None:
                raise FileError(f"The CSV header (line {start}) is not valid CSV ({exc})") from None
            yield Record(start, None, f"is not valid CSV ({exc})")
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if _has_undecodable(cells):
            if cols is None:
                raise FileError(f"The CSV header (line {start}) is not valid UTF-8")
            yield Record(start, None, "is not valid UTF-8")
            continue
        if cols is None:
            cols = columns(cells)
            continue
        if len(cells) != len(cols):
            yield Record(start, None, f"has {len(cells)} values but the header has {len(cols)} columns")
            continue
        try:
            yield Record(start, item_from_row(cols, cells))
        except ValueError as exc:
            yield Record(start, None, str(exc))
    if cols is None:
        raise FileError("The CSV file has no header row (it is empty)")

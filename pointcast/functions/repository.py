"""Every query on functions and their invocations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.store import models as m

_F = m.functions
_I = m.function_invocations


def get(conn: sa.Connection, name: str, *, with_code: bool = False) -> sa.Row[Any] | None:
    columns = [_F.c.name, _F.c.doc, _F.c.policy, _F.c.tags] + ([_F.c.code] if with_code else [])
    return conn.execute(sa.select(*columns).where(_F.c.name == name)).first()


def insert(conn: sa.Connection, name: str, doc: dict[str, Any], code: bytes, tags: dict[str, str]) -> None:
    conn.execute(sa.insert(_F).values(name=name, doc=doc, code=code, policy=[], tags=tags))


def update(conn: sa.Connection, name: str, **values: Any) -> None:
    conn.execute(sa.update(_F).where(_F.c.name == name).values(**values))


def delete(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.delete(_F).where(_F.c.name == name)).rowcount == 1


def code_hashes(conn: sa.Connection) -> dict[str, str]:
    """Every function's name and CodeSha256."""
    return {row.name: row.doc["CodeSha256"] for row in conn.execute(sa.select(_F.c.name, _F.c.doc))}


def page(conn: sa.Connection, after: str | None, limit: int) -> list[sa.Row[Any]]:
    query = sa.select(_F.c.name, _F.c.doc).order_by(_F.c.name).limit(limit)
    if after:
        query = query.where(_F.c.name > after)
    return list(conn.execute(query))


def insert_invocations(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(_I), rows)


def prune_invocations(conn: sa.Connection, keep: int, at_most: int | None = None) -> int:
    """Delete the oldest invocation records, of every function, past (at most) the newest ``keep``: ``at_most`` of
    them (all, if None); how many went."""
    newest = conn.execute(sa.select(sa.func.max(_I.c.pk))).scalar()
    if newest is None or newest <= keep:
        return 0
    old = _I.c.pk <= newest - keep
    if at_most is not None:
        oldest = sa.select(_I.c.pk).where(old).order_by(_I.c.pk).limit(at_most).scalar_subquery()
        old = _I.c.pk.in_(oldest)
    return conn.execute(sa.delete(_I).where(old)).rowcount or 0


def invocations(conn: sa.Connection, function: str, limit: int, before: int | None = None) -> list[sa.Row[Any]]:
    """The newest invocations of a function (by name or ARN), newest first."""
    query = sa.select(_I).where(_I.c.function == function).order_by(_I.c.pk.desc()).limit(limit)
    if before is not None:
        query = query.where(_I.c.pk < before)
    return list(conn.execute(query))

"""``page-size`` and ``token`` in, ``NextToken`` out, over any table with an increasing ``pk``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pointcast.aws.errors import BadRequest

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_NUMBER = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit takes "²"), and within SQL's BIGINT


@dataclass(frozen=True, slots=True)
class Page:
    size: int
    after: int

    @classmethod
    def from_params(cls, page_size: str | None, token: str | None) -> Page:
        size = DEFAULT_PAGE_SIZE
        if page_size not in (None, ""):
            if not _NUMBER.fullmatch(str(page_size)) or not 1 <= int(page_size) <= MAX_PAGE_SIZE:
                raise BadRequest(f"page-size must be a whole number from 1 to {MAX_PAGE_SIZE} (got {page_size!r})")
            size = int(page_size)
        after = 0
        if token not in (None, ""):
            if not str(token).startswith("p") or not _NUMBER.fullmatch(str(token)[1:]):
                raise BadRequest(f"token {token!r} is not a NextToken this server issued")
            after = int(str(token)[1:])
        return cls(size, after)

    def fetch(
        self, conn: sa.Connection, query: sa.Select[Any], pk: sa.ColumnElement[int]
    ) -> tuple[list[Any], str | None]:
        """Run ``query`` (which must select ``pk``) for this page; return the rows and the next token."""
        rows = conn.execute(query.where(pk > self.after).order_by(pk).limit(self.size + 1)).all()
        if len(rows) > self.size:
            rows = rows[: self.size]
            return list(rows), f"p{rows[-1].pk}"
        return list(rows), None


def page_response(items: list[Any], token: str | None) -> dict[str, Any]:
    return {"Item": items, "NextToken": token} if token else {"Item": items}

"""Storage shared by segments and campaigns: a current document plus every version of it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.errors import BadRequest, NotFound
from pointcast.pinpoint.paging import Page, page_response
from pointcast.store.locks import Key

_VERSION = re.compile(r"[0-9]{1,9}")  # ASCII digits (str.isdigit takes "²"), within an INTEGER column


@dataclass(frozen=True)
class VersionedRepository:
    """Queries over ``table`` (current documents) and ``versions`` (one row per version), keyed by app and id."""

    table: sa.Table
    versions: sa.Table
    key: str  # the id column in ``versions`` ("segment_id", "campaign_id")
    label: str  # "Segment", "Campaign": used in messages

    def insert(self, conn: sa.Connection, app_id: str, doc: dict[str, Any]) -> None:
        conn.execute(sa.insert(self.table).values(app_id=app_id, id=doc["Id"], version=doc["Version"], doc=doc))
        self._insert_version(conn, app_id, doc)

    def lock_key(self, app_id: str, resource_id: str) -> Key:
        """What ``pointcast.store.lock`` holds while a transaction reads and rewrites this resource."""
        return (self.label, app_id, resource_id)

    def replace(self, conn: sa.Connection, app_id: str, doc: dict[str, Any]) -> None:
        """Store ``doc`` as the new current version (``Version``: the current one plus 1). The caller holds the
        resource's lock (``lock_key``) since it read the current document."""
        t = self.table
        conn.execute(
            sa.update(t).where(t.c.app_id == app_id, t.c.id == doc["Id"]).values(version=doc["Version"], doc=doc)
        )
        self._insert_version(conn, app_id, doc)

    def set_current(self, conn: sa.Connection, app_id: str, doc: dict[str, Any]) -> None:
        """Change the current document without making a new version (state changes, tags).

        Only while ``doc``'s ``Version`` is still the current one: a change made from a document read before an
        update committed (the engine reads campaigns without the resource's lock) is dropped rather than putting
        the older version's members back over the update's."""
        t = self.table
        query = sa.update(t).where(t.c.app_id == app_id, t.c.id == doc["Id"])
        if "Version" in doc:
            query = query.where(t.c.version == doc["Version"])
        conn.execute(query.values(doc=doc))

    def change_current(
        self,
        conn: sa.Connection,
        app_id: str,
        resource_id: str,
        version: int,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> bool:
        """Rewrite the current document as ``change`` makes it from the stored one, read again with its row locked,
        while it is still at ``version``; False if it is gone or another version is current.

        For writers that hold no resource lock (the engine's state changes): the change applies to what is stored
        now, so that what another transaction committed since the caller read it (TagResource's tags) stays."""
        t = self.table
        where = (t.c.app_id == app_id, t.c.id == resource_id, t.c.version == version)
        row = conn.execute(sa.select(t.c.doc).where(*where).with_for_update()).first()
        if row is None:
            return False
        conn.execute(sa.update(t).where(*where).values(doc=change(dict(row.doc))))
        return True

    def _insert_version(self, conn: sa.Connection, app_id: str, doc: dict[str, Any]) -> None:
        conn.execute(
            sa.insert(self.versions).values(app_id=app_id, version=doc["Version"], doc=doc, **{self.key: doc["Id"]})
        )

    def get(self, conn: sa.Connection, app_id: str, resource_id: str, *, for_update: bool = False) -> dict[str, Any]:
        """The current document; NotFound naming the application when that is what is missing. ``for_update``
        also locks the row (PostgreSQL) until the transaction ends, so that a write of it by a transaction that
        does not take the resource's lock (the engine's state changes) is read, not overwritten."""
        t = self.table
        query = sa.select(t.c.doc).where(t.c.app_id == app_id, t.c.id == resource_id)
        row = conn.execute(query.with_for_update() if for_update else query).first()
        if row is None:
            apps.require(conn, app_id)
            raise NotFound(f"{self.label} '{resource_id}' not found in application '{app_id}'")
        doc: dict[str, Any] = row.doc
        return doc

    def exists(self, conn: sa.Connection, app_id: str, resource_id: str) -> bool:
        t = self.table
        return conn.execute(sa.select(t.c.pk).where(t.c.app_id == app_id, t.c.id == resource_id)).first() is not None

    def page(self, conn: sa.Connection, app_id: str, page: Page) -> dict[str, Any]:
        t = self.table
        rows, token = page.fetch(conn, sa.select(t.c.pk, t.c.doc).where(t.c.app_id == app_id), t.c.pk)
        if not rows:
            apps.require(conn, app_id)  # an empty page of a missing application is a NotFound
        return page_response([row.doc for row in rows], token)

    def version(self, conn: sa.Connection, app_id: str, resource_id: str, version: str) -> dict[str, Any]:
        if not _VERSION.fullmatch(str(version)):
            raise BadRequest(f"Version must be a whole number (got {version!r})")
        v = self.versions
        row = conn.execute(
            sa.select(v.c.doc).where(v.c.app_id == app_id, v.c[self.key] == resource_id, v.c.version == int(version))
        ).first()
        if row is None:
            self.get(conn, app_id, resource_id)
            raise NotFound(f"{self.label} '{resource_id}' has no version {version}")
        doc: dict[str, Any] = row.doc
        return doc

    def version_page(self, conn: sa.Connection, app_id: str, resource_id: str, page: Page) -> dict[str, Any]:
        self.get(conn, app_id, resource_id)
        v = self.versions
        query = sa.select(v.c.version.label("pk"), v.c.doc).where(v.c.app_id == app_id, v.c[self.key] == resource_id)
        rows, token = page.fetch(conn, query, v.c.version)
        return page_response([row.doc for row in rows], token)

    def delete(self, conn: sa.Connection, app_id: str, resource_id: str) -> dict[str, Any]:
        doc = self.get(conn, app_id, resource_id)
        t, v = self.table, self.versions
        conn.execute(sa.delete(t).where(t.c.app_id == app_id, t.c.id == resource_id))
        conn.execute(sa.delete(v).where(v.c.app_id == app_id, v.c[self.key] == resource_id))
        return doc

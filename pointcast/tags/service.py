"""TagResource, UntagResource and ListTagsForResource over the resources that carry ``tags``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.apps import service as app_service
from pointcast.aws.arns import parse_pinpoint_arn
from pointcast.aws.errors import NotFound
from pointcast.campaigns.repository import campaigns
from pointcast.pinpoint import limits
from pointcast.pinpoint.versioned import VersionedRepository
from pointcast.segments.repository import segments
from pointcast.store import lock

_KINDS: dict[str, VersionedRepository] = {"campaigns": campaigns, "segments": segments}


def _locate(arn: str, region: str, account: str) -> tuple[str, VersionedRepository | None, str | None]:
    parsed = parse_pinpoint_arn(arn)
    if parsed.account != account or parsed.region != region:
        raise NotFound(f"Resource '{arn}' not found: this server holds account {account} in {region}")
    if parsed.kind is None:
        return parsed.app_id, None, None
    repository = _KINDS.get(parsed.kind)
    if repository is None:
        raise NotFound(f"Resource '{arn}' not found: pointcast tags applications, campaigns and segments")
    return parsed.app_id, repository, parsed.resource_id


def get_tags(conn: sa.Connection, arn: str, region: str, account: str) -> dict[str, str]:
    app_id, repository, resource_id = _locate(arn, region, account)
    if repository is None:
        tags: dict[str, str] = apps.get(conn, app_id).tags
        return tags
    apps.require(conn, app_id)
    return dict(repository.get(conn, app_id, str(resource_id)).get("tags") or {})


def _change_tags(
    conn: sa.Connection, arn: str, region: str, account: str, change: Callable[[dict[str, str]], dict[str, str]]
) -> None:
    """Rewrite the resource's tags as ``change`` makes them from the current ones, holding the resource (its
    application's settings row, or the campaign or segment) so that concurrent tag changes all apply."""
    app_id, repository, resource_id = _locate(arn, region, account)
    if repository is None:
        lock(conn, app_service.lock_key(app_id))
        tags = change(dict(apps.get(conn, app_id).tags))
        limits.check_tags(tags, "TagsModel.tags")
        apps.update(conn, app_id, tags=tags)
        return
    apps.require(conn, app_id)
    lock(conn, repository.lock_key(app_id, str(resource_id)))
    doc = dict(repository.get(conn, app_id, str(resource_id), for_update=True))
    doc["tags"] = change(dict(doc.get("tags") or {}))
    limits.check_tags(doc["tags"], "TagsModel.tags")
    repository.set_current(conn, app_id, doc)


def tag(conn: sa.Connection, arn: str, new: dict[str, str], region: str, account: str) -> None:
    _change_tags(conn, arn, region, account, lambda current: {**current, **new})


def untag(conn: sa.Connection, arn: str, keys: list[str], region: str, account: str) -> None:
    gone = set(keys)
    _change_tags(conn, arn, region, account, lambda current: {k: v for k, v in current.items() if k not in gone})


def tags_model(tags: dict[str, str]) -> dict[str, Any]:
    return {"tags": tags}

"""TagResource, UntagResource and ListTagsForResource over the resources that carry ``tags``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.apps import repository as apps
from pointcast.aws.arns import parse_pinpoint_arn
from pointcast.aws.errors import NotFound
from pointcast.campaigns.repository import campaigns
from pointcast.pinpoint import limits
from pointcast.pinpoint.versioned import VersionedRepository
from pointcast.segments.repository import segments

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


def _set_tags(conn: sa.Connection, arn: str, region: str, account: str, tags: dict[str, str]) -> None:
    limits.check_tags(tags, "TagsModel.tags")
    app_id, repository, resource_id = _locate(arn, region, account)
    if repository is None:
        apps.update(conn, app_id, tags=tags)
        return
    doc = dict(repository.get(conn, app_id, str(resource_id)))
    doc["tags"] = tags
    repository.set_current(conn, app_id, doc)


def tag(conn: sa.Connection, arn: str, new: dict[str, str], region: str, account: str) -> None:
    _set_tags(conn, arn, region, account, {**get_tags(conn, arn, region, account), **new})


def untag(conn: sa.Connection, arn: str, keys: list[str], region: str, account: str) -> None:
    current = get_tags(conn, arn, region, account)
    _set_tags(conn, arn, region, account, {k: v for k, v in current.items() if k not in set(keys)})


def tags_model(tags: dict[str, str]) -> dict[str, Any]:
    return {"tags": tags}

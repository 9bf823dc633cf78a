"""Applications: create, read, delete; settings (default CampaignHook, Limits, QuietTime)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.apps import repository
from pointcast.aws.arns import app_arn
from pointcast.aws.errors import BadRequest
from pointcast.aws.wire import new_id, now_iso
from pointcast.pinpoint import limits
from pointcast.pinpoint.paging import Page, page_response
from pointcast.store import lock
from pointcast.store.locks import Key

SETTINGS_MEMBERS = ("CampaignHook", "Limits", "QuietTime", "JourneyLimits")
WEBHOOK_SECRET_KEY = "_WebhookSecret"  # pointcast's own setting: members starting with "_" are never returned


def lock_key(app_id: str) -> Key:
    """What ``pointcast.store.lock`` holds while an application's row (settings, tags) is read and rewritten."""
    return ("app", app_id)


def response(row: Any, region: str, account: str) -> dict[str, Any]:
    return {
        "Arn": app_arn(region, account, row.id),
        "Id": row.id,
        "Name": row.name,
        "tags": row.tags,
        "CreationDate": row.creation_date,
    }


def create(conn: sa.Connection, request: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    name = request["Name"].strip()
    if not name or len(name) > 64:
        raise BadRequest("CreateApplicationRequest.Name must be 1 to 64 characters")
    limits.check_tags(request.get("tags"), "CreateApplicationRequest.tags")
    app_id, created = new_id(), now_iso()
    settings = {
        "ApplicationId": app_id,
        "CampaignHook": {},
        "LastModifiedDate": created,
        "Limits": {},
        "QuietTime": {},
    }
    repository.insert(
        conn,
        {
            "id": app_id,
            "name": name,
            "creation_date": created,
            "settings": settings,
            "tags": request.get("tags") or {},
        },
    )
    return response(repository.get(conn, app_id), region, account)


def get(conn: sa.Connection, app_id: str, region: str, account: str) -> dict[str, Any]:
    return response(repository.get(conn, app_id), region, account)


def list_apps(conn: sa.Connection, page: Page, region: str, account: str) -> dict[str, Any]:
    rows, token = repository.page(conn, page)
    return page_response([response(row, region, account) for row in rows], token)


def delete(conn: sa.Connection, app_id: str, region: str, account: str) -> dict[str, Any]:
    result = response(repository.get(conn, app_id), region, account)
    repository.delete_cascade(conn, app_id)
    return result


def get_settings(conn: sa.Connection, app_id: str) -> dict[str, Any]:
    settings: dict[str, Any] = repository.get(conn, app_id).settings
    return settings


def check_settings(request: dict[str, Any]) -> None:
    """The parts of WriteApplicationSettingsRequest the model cannot check."""
    limits.check_limits(request.get("Limits"), "WriteApplicationSettingsRequest.Limits")
    limits.check_quiet_time(request.get("QuietTime"), "WriteApplicationSettingsRequest.QuietTime")
    hook = request.get("CampaignHook")
    if hook and hook.get("Mode") and not (hook.get("LambdaFunctionName") or hook.get("WebUrl")):
        raise BadRequest("WriteApplicationSettingsRequest.CampaignHook needs LambdaFunctionName or WebUrl with Mode")


def update_settings(conn: sa.Connection, app_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """Members given replace the stored ones; members left out are kept."""
    lock(conn, lock_key(app_id))
    settings = dict(get_settings(conn, app_id))
    for member in SETTINGS_MEMBERS:
        if member in request:
            settings[member] = request[member]
    for member in ("CloudWatchMetricsEnabled", "EventTaggingEnabled"):
        if member in request:
            settings.setdefault("_Flags", {})[member] = request[member]
    settings["LastModifiedDate"] = now_iso()
    repository.update(conn, app_id, settings=settings)
    return public_settings(settings)


def set_webhook_secret(conn: sa.Connection, app_id: str, secret: str | None) -> None:
    lock(conn, lock_key(app_id))
    settings = dict(get_settings(conn, app_id))
    if secret is None:
        settings.pop(WEBHOOK_SECRET_KEY, None)
    else:
        settings[WEBHOOK_SECRET_KEY] = secret
    repository.update(conn, app_id, settings=settings)


def public_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if not k.startswith("_")}

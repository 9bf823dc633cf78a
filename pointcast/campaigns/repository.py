"""Queries on campaigns (the versioned store) and their activities (runs)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pointcast.pinpoint.paging import Page, page_response
from pointcast.pinpoint.versioned import VersionedRepository
from pointcast.store import models as m

campaigns = VersionedRepository(m.campaigns, m.campaign_versions, "campaign_id", "Campaign")


def activities_page(conn: sa.Connection, app_id: str, campaign_id: str, page: Page) -> dict[str, Any]:
    a = m.activities
    query = sa.select(a.c.pk, a.c.doc).where(a.c.app_id == app_id, a.c.campaign_id == campaign_id)
    rows, token = page.fetch(conn, query, a.c.pk)
    return page_response([row.doc for row in rows], token)


def delete_runs(conn: sa.Connection, app_id: str, campaign_id: str) -> None:
    """Forget the campaign's runs with their plan and outcomes: a deleted campaign sends nothing more."""
    r = m.runs
    run_ids = sa.select(r.c.id).where(r.c.app_id == app_id, r.c.campaign_id == campaign_id).scalar_subquery()
    batch_ids = sa.select(m.batches.c.id).where(m.batches.c.run_id.in_(run_ids)).scalar_subquery()
    conn.execute(sa.delete(m.attempts).where(m.attempts.c.batch_id.in_(batch_ids)))
    conn.execute(sa.delete(m.outcomes).where(m.outcomes.c.run_id.in_(run_ids)))
    conn.execute(sa.delete(m.batches).where(m.batches.c.run_id.in_(run_ids)))
    conn.execute(sa.delete(r).where(r.c.app_id == app_id, r.c.campaign_id == campaign_id))


def delete_activities(conn: sa.Connection, app_id: str, campaign_id: str) -> None:
    a = m.activities
    conn.execute(sa.delete(a).where(a.c.app_id == app_id, a.c.campaign_id == campaign_id))


def with_state(doc: dict[str, Any], status: str) -> dict[str, Any]:
    """The campaign with ``status`` as its State, DefaultState and each additional treatment's State: they move
    together (UpdateCampaign sets them together too). DefaultState, the default treatment's, "exists only for
    campaigns that have more than one treatment" (botocore's model)."""
    state = {"CampaignStatus": status}
    treatments = [{**t, "State": state} for t in doc.get("AdditionalTreatments") or []]
    changed = {**doc, "State": state}
    changed.pop("DefaultState", None)
    if treatments:
        changed["AdditionalTreatments"] = treatments
        changed["DefaultState"] = state
    return changed

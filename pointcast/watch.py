"""``pointcast campaigns watch``: a live progress bar over a campaign's current run."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

POLL_SECONDS = 0.5
_DONE = ("COMPLETED", "PENDING_NEXT_RUN", "PAUSED", "DELETED")


def watch(client: Any, app_id: str, campaign_id: str, timeout: float, console: Console | None = None) -> int:
    """Poll progress until the campaign has no run in flight; return 0, or 1 if endpoints failed."""
    console = console or Console()
    pinpoint = client.pinpoint()
    path = f"/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/progress"
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "sent {task.fields[sent]}  failed {task.fields[failed]}  skipped {task.fields[skipped]}"
            "  filtered {task.fields[filtered]}"
        ),
        TextColumn("{task.fields[rate]:.0f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(campaign_id[:12], total=None, sent=0, failed=0, skipped=0, filtered=0, rate=0.0)
        started, first_done = time.monotonic(), None
        progress: dict[str, Any] = {}
        while time.monotonic() < deadline:
            progress = client.request("GET", path)
            campaign = pinpoint.get_campaign(ApplicationId=app_id, CampaignId=campaign_id)["CampaignResponse"]
            state = campaign["State"]
            done = progress["Sent"] + progress["Failed"] + progress["Filtered"]  # of Planned: batches' endpoints
            if first_done is None and done:
                first_done = (time.monotonic(), done)
            rate = (done - first_done[1]) / max(time.monotonic() - first_done[0], 1e-6) if first_done else 0.0
            description = campaign_id[:12]
            start = (campaign.get("Schedule") or {}).get("StartTime")
            if not progress["Runs"] and state["CampaignStatus"] == "SCHEDULED" and start:
                description += f" [dim]not started: scheduled for {start}[/dim]"
            for down in progress.get("DestinationsDown") or []:  # its batches wait for the destination's breaker
                description += (
                    f" [red]{down['Destination']} is down ({down['DownSeconds']:.0f} s; {down['LastError']})[/red]"
                )
            bar.update(
                task,
                description=description,
                total=progress["Planned"] or None,
                completed=done,
                sent=progress["Sent"],
                failed=progress["Failed"],
                skipped=progress["Skipped"],
                filtered=progress["Filtered"],
                rate=rate,
            )
            running = any(run["State"] != "COMPLETED" for run in progress["Runs"])
            if state["CampaignStatus"] in _DONE and not running:
                break
            time.sleep(POLL_SECONDS)
        else:
            if progress.get("Runs"):
                console.print(f"[yellow]stopped watching after {timeout:.0f} s; the campaign is still running[/yellow]")
            else:
                console.print(
                    f"[yellow]stopped watching after {timeout:.0f} s; the campaign has not started "
                    f"({state['CampaignStatus']}, start {start})[/yellow]"
                )
            return 2
    elapsed = time.monotonic() - started
    console.print(
        f"{state['CampaignStatus']}: {progress['Sent']} sent, {progress['Failed']} failed, "
        f"{progress['Skipped']} skipped, {progress['Filtered']} filtered ({elapsed:.1f} s watched)"
    )
    errors = [run for run in progress.get("Runs") or [] if run.get("Error")]
    for run in errors:  # a run that ended without planning its audience
        console.print(f"[red]run {run['Id']} ({run['ScheduledTime']}): {escape(run['Error'])}[/red]")
    return 1 if progress["Failed"] or errors else 0

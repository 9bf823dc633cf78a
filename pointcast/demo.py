"""``pointcast demo``: pointcast on SQLite, a local HTTPS webhook receiver, and a campaign tour with boto3.

Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from rich.console import Console
from rich.table import Table

from pointcast.channels.webhook.receiver import LocalReceiver
from pointcast.functions.code import remove_tree, zip_files

ACCOUNT_ID = "000000000000"
ENDPOINTS = 1000
KEY_ID, SECRET = "AKIDPOINTCASTDEMO", "pointcast-demo-secret"
# The file that marks a data dir as the demo's own, which the next run may delete.
DEMO_MARKER = ".pointcast-demo"
console = Console()
CREDIT_SCORE = """
import random

def lambda_handler(event, context):
    # seed 003's FILTER example in Python: each endpoint gets a CreditScore attribute before delivery
    for endpoint in event["Endpoints"].values():
        endpoint.setdefault("Attributes", {})["CreditScore"] = [random.randint(650, 849)]
    return event["Endpoints"]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy_credit_score(lam: Any, account_id: str, region: str) -> dict[str, Any]:
    """CreateFunction + AddPermission (every app of the account) for seed 003's FILTER example in Python, as a user
    would with boto3; the demo and bench/webhook_campaign.py both deploy it. Returns the function's configuration."""
    function: dict[str, Any] = lam.create_function(
        FunctionName="credit-score",
        Runtime="python3.12",
        Role=f"arn:aws:iam::{account_id}:role/pointcast-demo",
        Handler="index.lambda_handler",
        Code={"ZipFile": zip_files({"index.py": CREDIT_SCORE})},
    )
    lam.add_permission(
        FunctionName="credit-score",
        StatementId="pinpoint",
        Action="lambda:InvokeFunction",
        Principal=f"pinpoint.{region}.amazonaws.com",
        SourceArn=f"arn:aws:mobiletargeting:{region}:{account_id}:apps/*",
    )
    return function


def _start_server(data_dir: Path, port: int, ca_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POINTCAST_")}
    env.update(
        {
            "POINTCAST_CREDENTIALS": f"{KEY_ID}:{SECRET}",
            "POINTCAST_ACCOUNT_ID": ACCOUNT_ID,
            "POINTCAST_CA_BUNDLE": str(ca_path),
            "POINTCAST_LOG_LEVEL": "warning",
        }
    )
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pointcast", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pointcast serve exited; see {data_dir / 'server.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/pointcast/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("pointcast serve did not start within 30 s")


def _endpoints(count: int) -> list[dict[str, Any]]:
    channels = ["EMAIL", "SMS", "CUSTOM", "GCM"]
    cities = ["Seattle", "Lisbon", "Osaka", "Lagos"]
    return [
        {
            "Id": f"endpoint-{i:04d}",
            "ChannelType": channels[i % 4],
            "Address": f"user{i}@example.com" if i % 4 == 0 else f"+1206555{i:04d}",
            "Attributes": {"Interests": ["shoes" if i % 2 else "hats"]},
            "Location": {"City": cities[i % 4], "Country": "USA"},
            "User": {"UserId": f"user-{i // 2}", "UserAttributes": {"FirstName": [f"Name{i}"]}},
        }
        for i in range(count)
    ]


class NotADemoDir(Exception):
    """The data dir holds something the demo did not create: it is not the demo's to delete."""


def prepare_data_dir(data_dir: Path) -> None:
    """Give the demo an empty data dir holding only its marker. A directory an earlier demo made (it holds the
    marker) is emptied; one that is missing or empty is taken; anything else (a real store, perhaps with a server
    running on it) raises NotADemoDir and is left exactly as it was."""
    if data_dir.is_dir() and (data_dir / DEMO_MARKER).is_file():
        remove_tree(data_dir)  # functions' code is unpacked read-only
    elif data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise NotADemoDir(
            f"{data_dir} is not empty and was not made by pointcast demo (it has no {DEMO_MARKER} file); "
            "the demo deletes its data dir on each run, so it will not use this one. Pass --data-dir with a new "
            "or empty directory (or delete this one yourself if it is an earlier demo's)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_MARKER).write_text("pointcast demo: this directory is deleted and remade on each demo run\n")


def run_demo(data_dir: Path) -> int:
    try:
        prepare_data_dir(data_dir)
    except NotADemoDir as exc:
        console.print(f"[red]demo refused:[/red] {exc}")
        return 2
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with LocalReceiver(ACCOUNT_ID, data_dir) as receiver:
        server = _start_server(data_dir, port, receiver.ca_path)
        try:
            _tour(url, receiver)
        except Exception as exc:  # a clean one-line error instead of a traceback
            console.print(f"[red]demo failed:[/red] {exc}")
            return 1
        finally:
            server.terminate()
            server.wait(timeout=15)
    console.print("[green]Demo finished.[/green] Store kept in", data_dir)
    return 0


def _wait_completed(pp: Any, app_id: str, campaign_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = pp.get_campaign(ApplicationId=app_id, CampaignId=campaign_id)["CampaignResponse"]["State"]
        if state["CampaignStatus"] == "COMPLETED":
            return str(state["CampaignStatus"])
        time.sleep(0.2)
    raise RuntimeError(f"the campaign did not complete within {timeout:.0f} s")


def _client(service: str, url: str) -> Any:
    """A boto3 client for this pointcast, as a user would make one."""
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )


def _tour(url: str, receiver: LocalReceiver) -> None:
    pp = _client("pinpoint", url)
    console.rule("pointcast demo")
    console.print(f"pointcast on {url} (SQLite), webhook receiver on {receiver.url}")
    app = pp.create_app(CreateApplicationRequest={"Name": "shop", "tags": {"env": "demo"}})["ApplicationResponse"]
    console.print(f"1. create_app -> [bold]{app['Id']}[/bold] ({app['Arn']})")
    items = _endpoints(ENDPOINTS)
    for start in range(0, ENDPOINTS, 100):
        pp.update_endpoints_batch(ApplicationId=app["Id"], EndpointBatchRequest={"Item": items[start : start + 100]})
    sample = pp.get_endpoint(ApplicationId=app["Id"], EndpointId="endpoint-0007")["EndpointResponse"]
    console.print(
        f"2. update_endpoints_batch: {ENDPOINTS} endpoints; endpoint-0007 is {sample['ChannelType']} "
        f"{sample['Address']} in {sample['Location']['City']}"
    )
    segment = pp.create_segment(
        ApplicationId=app["Id"],
        WriteSegmentRequest={
            "Name": "shoe-lovers",
            "Dimensions": {"Attributes": {"Interests": {"AttributeType": "INCLUSIVE", "Values": ["shoes"]}}},
        },
    )["SegmentResponse"]
    console.print(f"3. create_segment -> {segment['Id']} (Interests = shoes)")
    lam = _client("lambda", url)
    function = deploy_credit_score(lam, ACCOUNT_ID, "us-east-1")
    console.print(
        f"4. lambda create_function + add_permission -> {function['FunctionArn']} (seed 003's FILTER example, "
        "in Python), run by pointcast's own worker pool"
    )
    campaign = pp.create_campaign(
        ApplicationId=app["Id"],
        WriteCampaignRequest={
            "Name": "spring-sale",
            "Hook": {"LambdaFunctionName": "credit-score", "Mode": "FILTER"},
            "SegmentId": segment["Id"],
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"CustomMessage": {"Data": '{"text": "Spring sale: 20% off shoes"}'}},
            "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["SMS", "CUSTOM"]},
            "AdditionalTreatments": [
                {
                    "SizePercent": 40,
                    "TreatmentName": "B",
                    "MessageConfiguration": {"CustomMessage": {"Data": '{"text": "25% off"}'}},
                }
            ],
            "HoldoutPercent": 10,
        },
    )["CampaignResponse"]
    console.print(
        f"5. create_campaign -> {campaign['Id']} with the FILTER hook; the webhook answered the HEAD check with "
        f"X-Amz-Pinpoint-AccountId {ACCOUNT_ID}; state {campaign['State']['CampaignStatus']}"
    )
    try:
        pp.create_campaign(
            ApplicationId=app["Id"],
            WriteCampaignRequest={
                "SegmentId": segment["Id"],
                "Schedule": {"StartTime": "IMMEDIATE"},
                "MessageConfiguration": {"CustomMessage": {"Data": "x"}},
                "CustomDeliveryConfiguration": {"DeliveryUri": "http://127.0.0.1/hook", "EndpointTypes": ["SMS"]},
            },
        )
    except pp.exceptions.BadRequestException as exc:
        console.print(f"6. a plain-http webhook is refused: [yellow]{exc.response['Error']['Message']}[/yellow]")
    state = _wait_completed(pp, app["Id"], campaign["Id"])
    endpoints = sum(len(batch["Endpoints"]) for batch in receiver.batches)
    scored = sum(
        1 for batch in receiver.batches for e in batch["Endpoints"].values() if "CreditScore" in e.get("Attributes", {})
    )
    console.print(
        f"7. the campaign ran: {state}; the webhook received {len(receiver.batches)} batch(es) "
        f"with {endpoints} endpoints (at most 50 per batch); {scored} carry the CreditScore the hook added"
    )
    if scored != endpoints:
        raise RuntimeError("the FILTER hook's attributes did not reach the webhook")
    activities = pp.get_campaign_activities(ApplicationId=app["Id"], CampaignId=campaign["Id"])
    runs = Table(title="get_campaign_activities")
    for column in ("treatment", "state", "result", "endpoints", "successful"):
        runs.add_column(column)
    for activity in sorted(activities["ActivitiesResponse"]["Item"], key=lambda a: a["TreatmentId"]):
        runs.add_row(
            activity["TreatmentId"],
            activity["State"],
            activity.get("Result", ""),
            str(activity["TotalEndpointCount"]),
            str(activity["SuccessfulEndpointCount"]),
        )
    console.print(runs)
    if not receiver.batches or endpoints != sum(
        a["SuccessfulEndpointCount"] for a in activities["ActivitiesResponse"]["Item"]
    ):
        raise RuntimeError("the webhook did not receive what the activities report")

    table = Table(title="what the store holds")
    for column in ("resource", "count"):
        table.add_column(column)
    table.add_row("applications", str(len(pp.get_apps()["ApplicationsResponse"]["Item"])))
    table.add_row("segments", str(len(pp.get_segments(ApplicationId=app["Id"])["SegmentsResponse"]["Item"])))
    table.add_row("campaigns", str(len(pp.get_campaigns(ApplicationId=app["Id"])["CampaignsResponse"]["Item"])))
    table.add_row(
        "user user-3 endpoints",
        str(len(pp.get_user_endpoints(ApplicationId=app["Id"], UserId="user-3")["EndpointsResponse"]["Item"])),
    )
    console.print(table)

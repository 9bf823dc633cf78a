"""Campaigns that run functions: a custom channel to a function, FILTER and DELIVERY hooks, permissions, failures.

Functions are deployed through boto3 as users do, run in pointcast's real worker processes, and the webhook
receivers are real TLS servers. The server here retries quickly (small backoffs) and gives a FILTER hook 2 s
(POINTCAST_HOOK_TIMEOUT) instead of Pinpoint's 15, so the timeout paths finish in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from pointcast.functions.runtime import node_ric
from tests.conftest import IN_CI, running_server
from tests.support.campaigns import (
    RESET,
    Receiver,
    activities,
    audience_segment,
    endpoint,
    load,
    outcomes,
    own,
    progress,
    wait_for,
    wait_for_runs,
    webhook_campaign,
)
from tests.support.functions import deploy, zip_code
from tests.support.loopback import LoopbackHTTP
from tests.support.server import ACCOUNT_ID, REGION, Server
from tests.support.signing import signed_request

HERE = Path(__file__).parent / "functions"
FAST = {
    "POINTCAST_DELIVERY_BACKOFF_BASE": "0.05",
    "POINTCAST_DELIVERY_BACKOFF_CAP": "0.2",
    "POINTCAST_DELIVERY_TIMEOUT": "5",
    "POINTCAST_SCHEDULER_INTERVAL": "0.2",
    "POINTCAST_HOOK_TIMEOUT": "2",
    "POINTCAST_FUNCTION_ATTEMPTS": "3",
}
IDS = [f"ep-{i:03d}" for i in range(120)]  # three batches: 50, 50, 20


@pytest.fixture(scope="module")
def server(backend: str, ca_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(backend, tmp_path_factory.mktemp(f"functions-{backend}"), ca_bundle, **FAST) as srv:
        yield srv


def name() -> str:
    return f"fn-{uuid.uuid4().hex[:10]}"


def function_arn(fn: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{fn}"


def function_campaign(pinpoint: Any, app_id: str, segment: str, target: str, **extra: Any) -> str:
    """An IMMEDIATE custom-channel campaign delivering to ``target`` (function ARN or webhook URL)."""
    campaign = webhook_campaign(pinpoint, app_id, segment, target, {"StartTime": "IMMEDIATE"}, **extra)
    return str(campaign["Id"])


def finish(server: Server, pinpoint: Any, app_id: str, campaign_id: str) -> dict[str, dict[str, Any]]:
    wait_for_runs(server, pinpoint, app_id, campaign_id, 1, "COMPLETED", timeout=90)
    found = outcomes(server, app_id, campaign_id)
    assert len({o["EndpointId"] for o in found}) == len(found)
    return {o["EndpointId"]: o for o in found}


def invocations(server: Server, fn: str, limit: int = 100) -> list[dict[str, Any]]:
    return list(own(server, f"/pointcast/v1/functions/{fn}/invocations", limit=limit)["Invocations"])


def loaded_app(pinpoint: Any, ids: list[str] = IDS, **fields: Any) -> tuple[str, str]:
    app_id = str(pinpoint.create_app(CreateApplicationRequest={"Name": "fn"})["ApplicationResponse"]["Id"])
    load(pinpoint, app_id, [endpoint(i, **fields) for i in ids])
    return app_id, audience_segment(pinpoint, app_id)


# --- custom channel to a function (seed 000) ----------------------------------------------------------------


def test_seed_000_counter_function_as_custom_channel(server, pinpoint, lam) -> None:
    """Seed 000's example unchanged: it counts and prints; its CloudWatch call fails until pointcast serves
    CloudWatch, so each batch ends FAILED with that error after 3 attempts, and what it logged is on record."""
    fn = name()
    deploy(lam, fn, (HERE / "seed000_counter.py").read_text(), handler="index.lambda_handler", Timeout=30)
    app_id, segment = loaded_app(pinpoint)
    campaign_id = function_campaign(pinpoint, app_id, segment, function_arn(fn))
    found = finish(server, pinpoint, app_id, campaign_id)
    assert sorted(found) == IDS
    calls = invocations(server, fn)
    assert len(calls) == 3 * 3 and {c["Kind"] for c in calls} == {"CHANNEL"}
    logged = "".join(c["Logs"] or "" for c in calls)
    assert logged.count("Endpoints in payload: 50") == 2 * 3 and logged.count("Endpoints in payload: 20") == 3
    assert {c["Source"] for c in calls} == {
        f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/{app_id}/campaigns/{campaign_id}"
    }
    assert {o["Status"] for o in found.values()} == {"FAILED"}
    assert all(o["Reason"].startswith(f"FUNCTION_FAILED: {function_arn(fn)}") for o in found.values())


COUNTING_CHANNEL = """
import json
def handler(event, context):
    assert set(event) == {"Message", "Data", "ApplicationId", "CampaignId", "TreatmentId", "ActivityId",
                          "ScheduledTime", "Endpoints"}, sorted(event)
    print("BATCH", json.dumps(sorted(event["Endpoints"])), event["Data"], event["TreatmentId"])
    for definition in event["Endpoints"].values():
        assert "Id" not in definition and definition["ChannelType"] == "CUSTOM"
    return {"delivered": len(event["Endpoints"])}
"""


def test_function_channel_receives_every_endpoint_once(server, pinpoint, lam) -> None:
    fn = name()
    deploy(lam, fn, COUNTING_CHANNEL)
    app_id, segment = loaded_app(pinpoint)
    campaign_id = function_campaign(pinpoint, app_id, segment, function_arn(fn))
    found = finish(server, pinpoint, app_id, campaign_id)
    assert {(o["Status"], o["Reason"]) for o in found.values()} == {("SENT", None)} and sorted(found) == IDS
    batches = [
        json.loads(line.split(" ", 1)[1].rsplit(" ", 2)[0])
        for c in invocations(server, fn)
        for line in (c["Logs"] or "").splitlines()
        if line.startswith("BATCH ")
    ]
    assert sorted(len(b) for b in batches) == [20, 50, 50]
    assert sorted(i for b in batches for i in b) == IDS  # once and only once
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["SuccessfulEndpointCount"] == 120 and activity["Result"] == "SUCCESS"


# --- FILTER hooks (seed 003) --------------------------------------------------------------------------------

FILTER_PORT = """
import random
def handler(event, context):
    # seed 003's example in Python, plus: drop every third endpoint and override one title
    kept = {}
    for key, endpoint in event["Endpoints"].items():
        if int(key.split("-")[1]) % 3 == 0:
            continue
        endpoint.setdefault("Attributes", {})["CreditScore"] = [random.randint(650, 849)]
        if key == "ep-001":
            endpoint["TitleOverride"] = "Just for you"
            endpoint["NotAnEndpointMember"] = "dropped"
        kept[key] = endpoint
    return kept
"""


def test_filter_hook_narrows_and_enriches_the_batch(server, pinpoint, lam, receiver) -> None:
    fn = name()
    deploy(lam, fn, FILTER_PORT)
    app_id, segment = loaded_app(pinpoint)
    hook = {"LambdaFunctionName": fn, "Mode": "FILTER"}
    campaign_id = function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook)
    found = finish(server, pinpoint, app_id, campaign_id)
    dropped = {i for i in IDS if int(i.split("-")[1]) % 3 == 0}
    assert {i for i, o in found.items() if (o["Status"], o["Reason"]) == ("SKIPPED", "FILTERED_BY_HOOK")} == dropped
    assert {i for i, o in found.items() if o["Status"] == "SENT"} == set(IDS) - dropped
    seen = {k: v for post in receiver.posts() for k, v in post.payload["Endpoints"].items()}
    assert set(seen) == set(IDS) - dropped and receiver.delivered() == {i: 1 for i in seen}
    assert all(650 <= v["Attributes"]["CreditScore"][0] < 850 for v in seen.values())
    assert seen["ep-001"]["TitleOverride"] == "Just for you" and "NotAnEndpointMember" not in seen["ep-001"]
    assert seen["ep-002"]["Attributes"]["Audience"] == ["all"]  # what the function kept stays
    [activity] = activities(pinpoint, app_id, campaign_id)
    assert activity["SuccessfulEndpointCount"] == len(seen) and activity["TotalEndpointCount"] == 120
    assert {c["Kind"] for c in invocations(server, fn)} == {"FILTER"}
    counts = progress(server, app_id, campaign_id)
    assert (counts["Sent"], counts["Filtered"], counts["Skipped"]) == (len(seen), len(dropped), 0)
    assert counts["Sent"] + counts["Failed"] + counts["Filtered"] == counts["Planned"] == 120  # watch's bar is full


def test_seed_003_filter_in_node_unchanged(server, pinpoint, lam, receiver) -> None:
    if shutil.which("node") is None:
        if IN_CI:
            pytest.fail("node is not on this machine; CI must run the Node.js FILTER example")
        pytest.skip("node is not on this machine: the Node.js FILTER example cannot run")
    # what the server's default finds: it runs in the same environment, with the same node
    installed = node_ric.resolve(node_ric.AUTO, shutil.which("node"))
    if installed is None and IN_CI:
        pytest.fail("CI=true but AWS's aws-lambda-ric is not installed ('pointcast functions install-node-ric')")
    client = httpx.get(f"{server.url}/pointcast/health").json()["functions"]["Pool"]["NodeRuntimeClient"]
    assert client == node_ric.describe(installed)  # AWS's own client where installed, else bootstrap.js
    fn = name()
    deploy(lam, fn, (HERE / "seed003_filter.js").read_text(), runtime="nodejs20.x")
    app_id, segment = loaded_app(pinpoint)
    hook = {"LambdaFunctionName": fn, "Mode": "FILTER"}
    campaign_id = function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook)
    found = finish(server, pinpoint, app_id, campaign_id)
    assert {(o["Status"], o["Reason"]) for o in found.values()} == {("SENT", None)}
    seen = {k: v for post in receiver.posts() for k, v in post.payload["Endpoints"].items()}
    assert sorted(seen) == IDS and all(650 <= v["Attributes"]["CreditScore"][0] < 850 for v in seen.values())
    logged = "".join(c["Logs"] or "" for c in invocations(server, fn))
    # console.log(JSON.stringify(event, null, 2)): the record keeps the log's tail, the end of the last endpoint
    assert '"CreditScore": [' in logged and logged.rstrip().endswith("}")


def test_project_default_hook_and_the_campaigns_own_wins(server, pinpoint, lam, receiver) -> None:
    everyone, nobody = name(), name()
    deploy(lam, everyone, "def handler(event, context):\n    return event['Endpoints']\n")
    deploy(lam, nobody, "def handler(event, context):\n    return {}\n")
    app_id, segment = loaded_app(pinpoint, IDS[:10])
    pinpoint.update_application_settings(
        ApplicationId=app_id,
        WriteApplicationSettingsRequest={"CampaignHook": {"LambdaFunctionName": nobody, "Mode": "FILTER"}},
    )
    by_default = function_campaign(pinpoint, app_id, segment, receiver.url)
    assert {o["Reason"] for o in finish(server, pinpoint, app_id, by_default).values()} == {"FILTERED_BY_HOOK"}
    own_hook = {"LambdaFunctionName": everyone, "Mode": "FILTER"}
    overriding = function_campaign(pinpoint, app_id, segment, receiver.url, Hook=own_hook)
    assert {o["Status"] for o in finish(server, pinpoint, app_id, overriding).values()} == {"SENT"}


def test_web_url_filter_hook(server, pinpoint, test_ca, receiver) -> None:
    def answer(record: Any) -> Any:
        event = json.loads(record.body)
        if "MessageConfiguration" not in event:
            return (200, {}, b"{}")  # the channel's own delivery
        kept = {k: {**v, "Attributes": {**v["Attributes"], "Tier": ["gold"]}} for k, v in event["Endpoints"].items()}
        return (200, {"Content-Type": "application/json"}, json.dumps(dict(list(kept.items())[:5])).encode())

    with Receiver(test_ca, responder=answer) as hook_rx:
        app_id, segment = loaded_app(pinpoint, IDS[:10])
        created = signed_request("POST", f"{server.url}/pointcast/v1/apps/{app_id}/webhook-secret")
        secret = created.json()["Secret"]
        hook = {"WebUrl": hook_rx.url, "Mode": "FILTER"}
        campaign_id = function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook)
        found = finish(server, pinpoint, app_id, campaign_id)
    assert sorted(i for i, o in found.items() if o["Status"] == "SENT") == IDS[:5]
    seen = {k: v for post in receiver.posts() for k, v in post.payload["Endpoints"].items()}
    assert sorted(seen) == IDS[:5] and {v["Attributes"]["Tier"][0] for v in seen.values()} == {"gold"}
    # Signed, each POST under its own message id: a receiver deduplicating on webhook-id keeps both.
    [hook_post] = [r for r in hook_rx.requests if r.method == "POST"]
    [channel_post] = [r for r in receiver.requests if r.method == "POST"]
    for post in (hook_post, channel_post):
        Webhook(secret).verify(post.body, dict(post.headers))
        assert post.headers["webhook-id"] == post.headers["X-Pointcast-Batch-Id"]
    assert hook_post.headers["webhook-id"] == channel_post.headers["webhook-id"] + ".filter"


@pytest.mark.parametrize("status", [200, 204])
def test_web_url_filter_hook_answering_with_an_empty_body(server, pinpoint, test_ca, receiver, status) -> None:
    with Receiver(test_ca, responder=lambda record: (status, {}, b"")) as hook_rx:
        app_id, segment = loaded_app(pinpoint, IDS[:3])
        hook = {"WebUrl": hook_rx.url, "Mode": "FILTER"}
        found = finish(server, pinpoint, app_id, function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook))
    reasons = {o["Status"] + ": " + o["Reason"] for o in found.values()}
    assert reasons == {f"FAILED: HOOK_FAILED: FILTER {hook_rx.url}: the hook answered {status} with an empty body, "
                       "not a map of endpoint id to endpoint definition"}, reasons  # fmt: skip
    assert len([r for r in hook_rx.requests if r.method == "POST"]) == 1  # an answer, not a failure to retry


# --- DELIVERY hook (seed 001) -------------------------------------------------------------------------------

MESSENGER = """
import json, os, urllib.request

PSID = "facebookMessengerPsid"

def handler(event, context):
    # seed 001's messenger example, in Python, posting to a local stand-in for the Graph API
    sent = 0
    if event.get("Message") and event.get("Endpoints"):
        for endpoint in event["Endpoints"].values():
            user = endpoint.get("User") or {}
            if (user.get("UserAttributes") or {}).get(PSID):
                body = json.dumps({"recipient": {"id": user["UserAttributes"][PSID][0]},
                                   "message": {"text": event["Message"]["smsmessage"]["body"]}}).encode()
                request = urllib.request.Request(os.environ["GRAPH_URL"], data=body,
                                                 headers={"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=5).read()
                sent += 1
    print("sent", sent)
    return {"body": "ok", "statusCode": 200}
"""


class Graph(LoopbackHTTP):
    """A plain-HTTP loopback stand-in for graph.facebook.com: records each message posted."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.messages.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler, "/v2.6/me/messages")


def test_delivery_hook_delivers_instead_of_built_in_channels(server, pinpoint, lam) -> None:
    graph = Graph()
    try:
        fn = name()
        deploy(lam, fn, MESSENGER, Environment={"Variables": {"GRAPH_URL": graph.url}})
        app_id = str(pinpoint.create_app(CreateApplicationRequest={"Name": "fb"})["ApplicationResponse"]["Id"])
        people = [
            {
                "Id": f"sms-{i}",
                "ChannelType": "SMS",
                "Address": f"+1555000{i:04d}",
                "Attributes": {"Audience": ["all"]},
                "User": {"UserId": f"u{i}", "UserAttributes": {"facebookMessengerPsid": [f"psid-{i}"]}},
            }
            for i in range(60)
        ]
        load(pinpoint, app_id, people)
        segment = audience_segment(pinpoint, app_id)
        request = {
            "Name": "messenger",
            "SegmentId": segment,
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"SMSMessage": {"Body": "This message should be intercepted by a campaign hook."}},
            "Hook": {"LambdaFunctionName": fn, "Mode": "DELIVERY"},
        }
        campaign_id = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"][
            "Id"
        ]
        found = finish(server, pinpoint, app_id, campaign_id)
    finally:
        graph.close()
    assert {(o["Status"], o["Reason"]) for o in found.values()} == {("SENT", None)} and len(found) == 60
    assert sorted(m["recipient"]["id"] for m in graph.messages) == sorted(f"psid-{i}" for i in range(60))
    assert {m["message"]["text"] for m in graph.messages} == {"This message should be intercepted by a campaign hook."}
    calls = invocations(server, fn)
    assert [c["Kind"] for c in calls] == ["DELIVERY", "DELIVERY"]


def test_a_delivery_web_url_hook_failing_says_so_once(server, pinpoint, test_ca) -> None:
    """The reason reads `<error>; 3 attempt(s) made`, not `timed out after 5.0 s after 3 attempt(s)`."""
    with Receiver(test_ca, responder=lambda r: RESET if r.method == "POST" else (200, {}, b"")) as hook_rx:
        app_id = str(pinpoint.create_app(CreateApplicationRequest={"Name": "d"})["ApplicationResponse"]["Id"])
        load(pinpoint, app_id, [endpoint("sms-1", ChannelType="SMS", Address="+15550000001")])
        request = {
            "Name": "delivery-url",
            "SegmentId": audience_segment(pinpoint, app_id),
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"SMSMessage": {"Body": "hi"}},
            "Hook": {"WebUrl": hook_rx.url, "Mode": "DELIVERY"},
        }
        campaign = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]
        found = finish(server, pinpoint, app_id, campaign["Id"])
    [reason] = {o["Reason"] for o in found.values()}
    assert reason.startswith(f"HOOK_FAILED: DELIVERY {hook_rx.url}: ") and reason.endswith("; 3 attempt(s) made")
    assert "after 3 attempt(s)" not in reason, reason


# --- a function that calls pointcast back -------------------------------------------------------------------

CALLBACK = """
import boto3
pinpoint = boto3.client("pinpoint")

def handler(event, context):
    app = event["ApplicationId"]
    for endpoint_id in event["Endpoints"]:
        pinpoint.update_endpoint(ApplicationId=app, EndpointId=endpoint_id,
                                 EndpointRequest={"Attributes": {"Notified": ["yes"]}})
        answer = pinpoint.put_events(ApplicationId=app, EventsRequest={"BatchItem": {endpoint_id: {
            "Endpoint": {}, "Events": {"e1": {"EventType": "custom.notified",
                                              "Timestamp": "2026-11-23T10:00:00.000Z"}}}}})
        result = answer["EventsResponse"]["Results"][endpoint_id]
        assert result["EventsItemResponse"]["e1"]["StatusCode"] == 202, result
        seen = pinpoint.get_endpoint(ApplicationId=app, EndpointId=endpoint_id)["EndpointResponse"]
        assert seen["Attributes"]["Notified"] == ["yes"], seen
    print("wrote", len(event["Endpoints"]))
    return {"ok": True}
"""


def test_handler_calls_pointcast_back_through_boto3(server, pinpoint, lam) -> None:
    fn = name()
    deploy(lam, fn, CALLBACK, Timeout=60)
    app_id, segment = loaded_app(pinpoint, IDS[:7])
    campaign_id = function_campaign(pinpoint, app_id, segment, function_arn(fn))
    found = finish(server, pinpoint, app_id, campaign_id)
    assert {o["Status"] for o in found.values()} == {"SENT"}, [c["Error"] for c in invocations(server, fn)]
    for endpoint_id in IDS[:7]:
        got = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId=endpoint_id)["EndpointResponse"]
        assert got["Attributes"]["Notified"] == ["yes"] and got["Attributes"]["Audience"] == ["all"]
    assert "wrote 7" in "".join(c["Logs"] or "" for c in invocations(server, fn))


# --- permissions --------------------------------------------------------------------------------------------


def refused(pinpoint: Any, app_id: str, segment: str, target: str, **extra: Any) -> str:
    with pytest.raises(pinpoint.exceptions.BadRequestException) as caught:
        function_campaign(pinpoint, app_id, segment, target, **extra)
    return str(caught.value)


def test_permission_matrix_at_create_and_update(server, pinpoint, lam) -> None:
    app_id, segment = loaded_app(pinpoint, IDS[:3])
    prefix = f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:"
    bare = name()
    deploy(lam, bare, allow=None)
    assert "no resource policy" in refused(pinpoint, app_id, segment, function_arn(bare))
    wrong_principal = name()
    deploy(lam, wrong_principal, principal="sns.amazonaws.com")
    why = refused(pinpoint, app_id, segment, function_arn(wrong_principal))
    assert "does not allow Pinpoint" in why and "is for sns.amazonaws.com, not pinpoint" in why
    other_project = name()
    deploy(lam, other_project, allow=prefix + "apps/someotherproject/*")
    why = refused(pinpoint, app_id, segment, function_arn(other_project))
    assert "does not allow" in why and "apps/someotherproject/* does not match" in why
    project_only = (prefix + f"apps/{app_id}/*", prefix + f"apps/{app_id}")  # the second: seed 000's wording
    for pattern in (*project_only, prefix + f"/apps/{app_id}/campaigns/*", prefix + "/apps/*"):
        allowed = name()
        deploy(lam, allowed, allow=pattern)
        function_campaign(pinpoint, app_id, segment, function_arn(allowed))
    assert "only its $LATEST exists" in refused(pinpoint, app_id, segment, function_arn(allowed) + ":prod")
    partial = {"LambdaFunctionName": f"{ACCOUNT_ID}:function:{allowed}", "Mode": "FILTER"}  # as the Lambda API takes
    settings = {"CampaignHook": partial}
    pinpoint.update_application_settings(ApplicationId=app_id, WriteApplicationSettingsRequest=settings)
    pinpoint.update_application_settings(ApplicationId=app_id, WriteApplicationSettingsRequest={"CampaignHook": {}})
    # Seed 000's note: a campaign-restricted policy is added after the campaign exists; updates then pass.
    narrowed = name()
    deploy(lam, narrowed, allow=prefix + f"apps/{app_id}/*")
    later = {"StartTime": "2099-01-01T00:00:00Z", "Frequency": "ONCE"}  # still editable when updated below
    campaign_id = webhook_campaign(pinpoint, app_id, segment, function_arn(narrowed), later)["Id"]
    lam.remove_permission(FunctionName=narrowed, StatementId="pinpoint")
    lam.add_permission(
        FunctionName=narrowed,
        StatementId="only-this-campaign",
        Action="lambda:InvokeFunction",
        Principal=f"pinpoint.{REGION}.amazonaws.com",
        SourceArn=prefix + f"apps/{app_id}/campaigns/{campaign_id}",
    )
    pinpoint.update_campaign(
        ApplicationId=app_id,
        CampaignId=campaign_id,
        WriteCampaignRequest={
            "CustomDeliveryConfiguration": {"DeliveryUri": function_arn(narrowed), "EndpointTypes": ["CUSTOM"]}
        },
    )
    assert "does not allow" in refused(pinpoint, app_id, segment, function_arn(narrowed))  # a new campaign: no
    # Hooks and project defaults are checked the same way.
    assert "no resource policy" in refused(pinpoint, app_id, segment, function_arn(narrowed).replace(narrowed, bare))
    with pytest.raises(pinpoint.exceptions.BadRequestException, match=r"CampaignHook\.LambdaFunctionName"):
        pinpoint.update_application_settings(
            ApplicationId=app_id,
            WriteApplicationSettingsRequest={"CampaignHook": {"LambdaFunctionName": narrowed, "Mode": "FILTER"}},
        )
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="not hosted"):
        function_campaign(pinpoint, app_id, segment, function_arn("nosuchfunction"))


def test_permission_removed_after_create_fails_at_run_time(server, pinpoint, lam, receiver) -> None:
    fn = name()
    deploy(lam, fn, "def handler(event, context):\n    return event['Endpoints']\n")
    app_id, segment = loaded_app(pinpoint, IDS[:3])
    request = {
        "Name": "later",
        "SegmentId": segment,
        "Schedule": {"StartTime": "2099-01-01T00:00:00Z", "Frequency": "ONCE"},
        "MessageConfiguration": {"CustomMessage": {"Data": "x"}},
        "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["CUSTOM"]},
        "Hook": {"LambdaFunctionName": fn, "Mode": "FILTER"},
        "IsPaused": True,
    }
    campaign = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]
    lam.remove_permission(FunctionName=fn, StatementId="pinpoint")
    pinpoint.update_campaign(
        ApplicationId=app_id,
        CampaignId=campaign["Id"],
        WriteCampaignRequest={"IsPaused": False, "Schedule": {"StartTime": "IMMEDIATE"}},
    )
    found = finish(server, pinpoint, app_id, campaign["Id"])
    assert {o["Status"] for o in found.values()} == {"FAILED"}
    assert all("PERMISSION_DENIED" in o["Reason"] and "no resource policy" in o["Reason"] for o in found.values())
    assert receiver.posts() == []
    assert [c["Outcome"] for c in invocations(server, fn)] == ["Refused"]  # refused once: no retries


SLOW_CHANNEL = "import time\ndef handler(event, context):\n    time.sleep(2)\n    return 'v1'\n"


def test_calls_waiting_for_a_worker_are_checked_again_after_a_permission_is_removed(server, pinpoint, lam) -> None:
    """10 batches for a function that takes 2 s, 4 at a time: the permission goes while 6 wait for a worker. Those
    are refused, as a call made after the change would be (before, they ran with the policy read when they
    started waiting)."""
    fn = name()
    deploy(lam, fn, SLOW_CHANNEL)
    ids = [f"w-{i:03d}" for i in range(500)]
    app_id, segment = loaded_app(pinpoint, ids)
    campaign_id = function_campaign(pinpoint, app_id, segment, function_arn(fn))
    time.sleep(1.0)  # the first 4 calls are running (workers start in about 0.5 s); the other 6 wait
    lam.remove_permission(FunctionName=fn, StatementId="pinpoint")
    found = finish(server, pinpoint, app_id, campaign_id)
    assert set(found) == set(ids)
    refused = [o for o in found.values() if o["Status"] == "FAILED"]
    assert refused and all("PERMISSION_DENIED" in o["Reason"] for o in refused), {o["Reason"] for o in refused}
    assert len(refused) >= 300  # at most 4 batches were under way when the permission went


def test_a_call_waiting_for_a_worker_runs_the_code_updated_meanwhile(lam) -> None:
    fn = name()
    deploy(lam, fn, SLOW_CHANNEL, allow=None)
    with ThreadPoolExecutor(5) as pool:
        calls = [pool.submit(lambda: lam.invoke(FunctionName=fn, Payload=b"{}")["Payload"].read()) for _ in range(5)]
        time.sleep(1.0)  # 4 running, 1 waiting for a worker (the function's concurrency is 4)
        lam.update_function_code(
            FunctionName=fn, ZipFile=zip_code({"index.py": "def handler(e, c):\n    return 'v2'\n"})
        )
        answers = sorted(json.loads(call.result(timeout=60)) for call in calls)
    assert answers == ["v1", "v1", "v1", "v1", "v2"]


# --- functions that misbehave -------------------------------------------------------------------------------

MISBEHAVING = {
    "raises": ("def handler(event, context):\n    raise RuntimeError('no luck today')\n", "no luck today"),
    # PostgreSQL refuses NUL in text: the error and log are kept with U+FFFD (and the batch is not retried over it)
    "raises NUL": (
        "def handler(event, context):\n    print('a \\x00 log')\n    raise ValueError('bad \\x00 value')\n",
        "bad \ufffd value",
    ),
    "sleeps": ("import time\ndef handler(event, context):\n    time.sleep(20)\n", "timed out"),
    "exits": ("import os\ndef handler(event, context):\n    os._exit(3)\n", "Runtime.ExitError"),
    "allocates": ("def handler(event, context):\n    return len(bytearray(1024 * 1024 * 1024))\n", ""),
}


@pytest.mark.parametrize("behaviour", sorted(MISBEHAVING))
@pytest.mark.parametrize("place", ["FILTER", "CHANNEL"])
def test_failing_functions_end_as_the_contract_says(server, pinpoint, lam, receiver, behaviour, place) -> None:
    code, words = MISBEHAVING[behaviour]
    fn = name()
    deploy(lam, fn, code, Timeout=3, MemorySize=128)
    app_id, segment = loaded_app(pinpoint, IDS[:60])
    if place == "FILTER":
        hook = {"LambdaFunctionName": fn, "Mode": "FILTER"}
        campaign_id = function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook)
        prefix = f"HOOK_FAILED: FILTER {fn}: "
    else:
        campaign_id = function_campaign(pinpoint, app_id, segment, function_arn(fn))
        prefix = f"FUNCTION_FAILED: {function_arn(fn)}: "
    found = finish(server, pinpoint, app_id, campaign_id)
    assert sorted(found) == IDS[:60] and {o["Status"] for o in found.values()} == {"FAILED"}
    reasons = {o["Reason"] for o in found.values()}
    assert all(r.startswith(prefix) and words in r and "after 3 attempt(s)" in r for r in reasons), reasons
    calls = invocations(server, fn)
    assert len(calls) == 2 * 3 and all(c["Outcome"] != "Success" for c in calls)
    # Each attempt names its invocation: a failed batch leads to the records that say why.
    batches = {o["BatchId"] for o in found.values()}
    base = f"/pointcast/v1/apps/{app_id}/campaigns/{campaign_id}/batches"
    tried = [a["RequestId"] for b in sorted(batches) for a in own(server, f"{base}/{b}/attempts")["Attempts"]]
    assert sorted(tried) == sorted(c["RequestId"] for c in calls), (tried, calls)
    if behaviour == "sleeps":
        limit = 2000 if place == "FILTER" else 3000  # the hook's 2 s, else the function's own Timeout
        assert all(limit * 0.9 <= c["DurationMs"] < limit + 1500 for c in calls), [c["DurationMs"] for c in calls]
    assert receiver.posts() == []
    # The pool recovered: the same worker slots serve a healthy function at once.
    healthy = name()
    deploy(lam, healthy, COUNTING_CHANNEL)
    assert json.loads(
        lam.invoke(FunctionName=healthy, Payload=json.dumps({"Endpoints": {}}).encode())["Payload"].read()
    )


@pytest.mark.parametrize(
    ("returns", "words"),
    [
        ("'not a map'", "returned a string, not a map of endpoint id"),
        ("[1, 2, 3]", "returned an array"),
        ("{k: 'x' for k in event['Endpoints']}", "the definition is a string, not an object"),
        ("None", "returned null"),
    ],
)
def test_filter_return_values_that_cannot_be_decoded(server, pinpoint, lam, receiver, returns, words) -> None:
    fn = name()
    deploy(lam, fn, f"def handler(event, context):\n    return {returns}\n")
    app_id, segment = loaded_app(pinpoint, IDS[:10])
    hook = {"LambdaFunctionName": fn, "Mode": "FILTER"}
    found = finish(server, pinpoint, app_id, function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook))
    assert {o["Status"] for o in found.values()} == {"FAILED"}
    assert all(words in o["Reason"] for o in found.values()), found
    assert len(invocations(server, fn)) == 1  # the function answered; its answer is unusable: not retried


def test_filter_returning_ids_not_in_the_batch(server, pinpoint, lam, receiver) -> None:
    fn = name()
    code = "def handler(event, context):\n    return {**event['Endpoints'], 'intruder': {'ChannelType': 'CUSTOM'}}\n"
    deploy(lam, fn, code)
    app_id, segment = loaded_app(pinpoint, IDS[:10])
    hook = {"LambdaFunctionName": fn, "Mode": "FILTER"}
    found = finish(server, pinpoint, app_id, function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook))
    assert sorted(found) == IDS[:10] and {o["Status"] for o in found.values()} == {"SENT"}
    assert "intruder" not in {k for post in receiver.posts() for k in post.payload["Endpoints"]}


# --- functions that live elsewhere (AWS Lambda; here a second pointcast on loopback stands in for it) --------


def remote_env(url: str, **extra: str) -> dict[str, str]:
    """A server that invokes functions it does not host in "AWS Lambda" at ``url`` (another pointcast)."""
    return {
        "POINTCAST_REMOTE_LAMBDA": "true",
        "POINTCAST_REMOTE_LAMBDA_ENDPOINT_URL": url,
        "POINTCAST_REMOTE_LAMBDA_ACCESS_KEY_ID": "AKIDPOINTCASTTEST",
        "POINTCAST_REMOTE_LAMBDA_SECRET_ACCESS_KEY": "pointcast-test-secret",
        **FAST,
        **extra,
    }


def test_function_not_hosted_here_is_invoked_through_the_lambda_api(
    backend: str, ca_bundle: Path, tmp_path: Path, server, receiver
) -> None:
    far = server.lambda_()
    fn = name()
    deploy(
        far,
        fn,
        "def handler(event, context):\n    return {k: v for k, v in event['Endpoints'].items() if k < 'ep-005'}\n",
    )
    remote = remote_env(server.url)
    with running_server(backend, tmp_path / "near", ca_bundle, **remote) as near:
        pinpoint = near.pinpoint()
        app_id, segment = loaded_app(pinpoint, IDS[:10])
        hook = {"LambdaFunctionName": function_arn(fn), "Mode": "FILTER"}
        campaign_id = function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook)
        found = finish(near, pinpoint, app_id, campaign_id)
        assert sorted(i for i, o in found.items() if o["Status"] == "SENT") == IDS[:5]
        recorded = invocations(near, function_arn(fn))
        assert [c["Kind"] for c in recorded] == ["FILTER"]
    assert [c["Kind"] for c in invocations(server, fn)] == ["Invoke"]  # the far side saw a Lambda Invoke


def test_a_write_reads_a_policy_in_aws_afresh(backend: str, ca_bundle: Path, tmp_path: Path, server, receiver) -> None:
    """Seed 000's workflow against a function in AWS: an update refused for want of a permission passes as soon as
    the permission is added, and one accepted is refused as soon as it is removed (not after the 2 s for which
    run time reuses AWS's answers)."""
    far = server.lambda_()
    fn = name()
    deploy(far, fn, allow=None)
    remote = remote_env(server.url)
    with running_server(backend, tmp_path / "near", ca_bundle, **remote) as near:
        pinpoint = near.pinpoint()
        app_id, segment = loaded_app(pinpoint, IDS[:3])
        later = {"StartTime": "2099-01-01T00:00:00Z", "Frequency": "ONCE"}
        campaign_id = str(webhook_campaign(pinpoint, app_id, segment, receiver.url, later)["Id"])
        hook = {"LambdaFunctionName": function_arn(fn), "Mode": "FILTER"}

        def update() -> None:
            pinpoint.update_campaign(ApplicationId=app_id, CampaignId=campaign_id, WriteCampaignRequest={"Hook": hook})

        with pytest.raises(pinpoint.exceptions.BadRequestException, match="no resource policy"):
            update()
        far.add_permission(
            FunctionName=fn,
            StatementId="pinpoint",
            Action="lambda:InvokeFunction",
            Principal=f"pinpoint.{REGION}.amazonaws.com",
            SourceArn=f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/{app_id}/*",
        )
        update()
        far.remove_permission(FunctionName=fn, StatementId="pinpoint")
        with pytest.raises(pinpoint.exceptions.BadRequestException, match="no resource policy"):
            update()


def test_functions_in_aws_are_invoked_as_many_at_once_as_batches_are_delivered(
    backend: str, ca_bundle: Path, tmp_path: Path, receiver
) -> None:
    """botocore is synchronous, so each invocation in AWS takes a thread while it waits: 12 batches whose FILTER
    function takes 3 s each are all invoked at once (12 of 32 delivery slots), not a few at a time (Python's default
    thread pool has os.cpu_count() + 4 threads: 6 here)."""
    far_env = {**FAST, "POINTCAST_FUNCTION_CONCURRENCY": "16"}
    with running_server(backend, tmp_path / "far", ca_bundle, **far_env) as far:
        fn = name()
        deploy(
            far.lambda_(),
            fn,
            "import time\n\ndef handler(event, context):\n    time.sleep(3)\n    return event['Endpoints']\n",
            Timeout=10,
        )
        remote = remote_env(far.url, POINTCAST_HOOK_TIMEOUT="15")  # 12 workers start at once on the far side
        with running_server(backend, tmp_path / "near", ca_bundle, **remote) as near:
            pinpoint = near.pinpoint()
            ids = [f"ep-{i:03d}" for i in range(600)]
            app_id, segment = loaded_app(pinpoint, ids)
            hook = {"LambdaFunctionName": function_arn(fn), "Mode": "FILTER"}
            campaign_id = function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook)
            found = finish(near, pinpoint, app_id, campaign_id)
            assert len(found) == 600
            assert {o["Status"] for o in found.values()} == {"SENT"}, {o["Reason"] for o in found.values()}
        calls = invocations(far, fn)
        assert len(calls) == 12, [(c["Outcome"], c.get("Error"), c["Started"], c["DurationMs"]) for c in calls]
        starts = sorted(c["Started"] for c in calls)
        spread = (datetime.fromisoformat(starts[-1]) - datetime.fromisoformat(starts[0])).total_seconds()
        assert spread < 2.0, f"the 12 invocations started over {spread:.2f} s"


def test_cli_functions_logs(server, lam) -> None:
    fn = name()
    deploy(lam, fn, "def handler(event, context):\n    print('hello from', context.function_name)\n    return 1\n")
    lam.invoke(FunctionName=fn, Payload=b"{}")
    import subprocess
    import sys

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDPOINTCASTTEST", "AWS_SECRET_ACCESS_KEY": "pointcast-test-secret"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pointcast"), "functions", "logs", fn, "--endpoint-url", server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"hello from {fn}" in result.stdout and "Success" in result.stdout

    def recorded() -> bool:
        return bool(invocations(server, fn))

    wait_for(recorded, 5, "the invocation record")


class LambdaProxy(LoopbackHTTP):
    """AWS Lambda as far as a test can tell: a loopback proxy in front of a pointcast, logging each request and
    answering the next ``throttle`` GetPolicy calls with AWS's 429."""

    def __init__(self, target: str) -> None:
        self.requests: list[str] = []
        self.throttle = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append(f"{self.command} {self.path}")
                if self.command == "GET" and self.path.split("?")[0].endswith("/policy") and outer.throttle > 0:
                    outer.throttle -= 1
                    self.answer(429, {"x-amzn-ErrorType": "TooManyRequestsException"}, b'{"message":"Rate exceeded"}')
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
                reply = httpx.request(self.command, target + self.path, content=body, headers=headers, timeout=30)
                hop = ("content-length", "transfer-encoding", "connection", "content-encoding", "date", "server")
                self.answer(reply.status_code, {k: v for k, v in reply.headers.items() if k not in hop}, reply.content)

            def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = forward

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)


def test_functions_in_aws_one_try_per_attempt_names_as_given_and_throttled_policy_reads_retried(
    backend: str, ca_bundle: Path, tmp_path: Path, server, receiver
) -> None:
    """Against "AWS" (a pointcast of another account, behind a proxy): a bare name is sent as it is, for AWS to
    resolve in the caller's account (not as an ARN of pointcast's own account id); a qualifier goes to GetPolicy too
    (an alias has a policy of its own); a failing function is invoked 3 times for 3 attempts (botocore retried
    each, making 6); a throttled GetPolicy is a failed attempt, tried again, not a refusal."""
    near_account = "222222222222"
    receiver.account_id = near_account  # the webhook's HEAD check names the account it belongs to
    allow = f"arn:aws:mobiletargeting:{REGION}:{near_account}:apps/*"
    far = server.lambda_()
    good, bad = name(), name()
    deploy(far, good, "def handler(event, context):\n    return event['Endpoints']\n", allow=allow)
    deploy(far, bad, "def handler(event, context):\n    raise ValueError('no')\n", allow=allow)
    proxy = LambdaProxy(server.url)
    remote = remote_env(proxy.url, POINTCAST_ACCOUNT_ID=near_account)
    try:
        with running_server(backend, tmp_path / "near", ca_bundle, **remote) as near:
            pinpoint = near.pinpoint()
            app_id, segment = loaded_app(pinpoint, IDS[:10])

            hook = {"LambdaFunctionName": f"{good}:$LATEST", "Mode": "FILTER"}
            # It starts in 3 s: by then the policy read at create time is no longer reused, each attempt reads it.
            later = {"StartTime": (datetime.now(UTC) + timedelta(seconds=3)).isoformat(), "Frequency": "ONCE"}
            campaign_id = str(webhook_campaign(pinpoint, app_id, segment, receiver.url, later, Hook=hook)["Id"])
            assert f"GET /2015-03-31/functions/{good}/policy?Qualifier=%24LATEST" in proxy.requests
            proxy.throttle = 2
            found = finish(near, pinpoint, app_id, campaign_id)
            assert {o["Status"] for o in found.values()} == {"SENT"}, {o.get("Reason") for o in found.values()}
            assert proxy.throttle == 0
            assert [c["Kind"] for c in invocations(server, good)] == ["Invoke"]

            hook = {"LambdaFunctionName": bad, "Mode": "FILTER"}
            found = finish(
                near, pinpoint, app_id, function_campaign(pinpoint, app_id, segment, receiver.url, Hook=hook)
            )
            assert {o["Status"] for o in found.values()} == {"FAILED"}, {o.get("Reason") for o in found.values()}
            assert all("ValueError: no" in o["Reason"] for o in found.values()), found
            assert len(invocations(server, bad)) == 3
    finally:
        proxy.close()
    assert not any(f"{near_account}:function" in r or "%3A222222222222" in r for r in proxy.requests), proxy.requests


def test_a_hook_event_carries_the_direct_message_configuration(server, pinpoint, test_ca) -> None:
    """Seeds 001 and 003: the event's MessageConfiguration "has the same structure as the
    DirectMessageConfiguration". An EMAIL campaign's Title/HtmlBody/Body reach a DELIVERY hook as
    EmailMessage.SimpleEmail's Subject/HtmlPart/TextPart; Message keeps the seed's lower-cased form."""
    with Receiver(test_ca) as hook_rx:
        app_id = str(pinpoint.create_app(CreateApplicationRequest={"Name": "mail"})["ApplicationResponse"]["Id"])
        mail = {"Id": "m1", "ChannelType": "EMAIL", "Address": "a@example.com", "Attributes": {"Audience": ["all"]}}
        load(pinpoint, app_id, [mail])
        email = {"FromAddress": "news@example.com", "Title": "Hi", "HtmlBody": "<p>Hello</p>", "Body": "Hello"}
        request = {
            "Name": "mail",
            "SegmentId": audience_segment(pinpoint, app_id),
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"EmailMessage": email},
            "Hook": {"WebUrl": hook_rx.url, "Mode": "DELIVERY"},
        }
        campaign = pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]
        found = finish(server, pinpoint, app_id, campaign["Id"])
    assert {o["Status"] for o in found.values()} == {"SENT"}
    [post] = [json.loads(r.body) for r in hook_rx.requests if r.method == "POST"]
    assert post["MessageConfiguration"] == {
        "EmailMessage": {
            "FromAddress": "news@example.com",
            "SimpleEmail": {
                "Subject": {"Data": "Hi"},
                "HtmlPart": {"Data": "<p>Hello</p>"},
                "TextPart": {"Data": "Hello"},
            },
        }
    }
    assert post["Message"] == {"emailmessage": {k.lower(): v for k, v in email.items()}}
    assert list(post["Endpoints"]) == ["m1"]

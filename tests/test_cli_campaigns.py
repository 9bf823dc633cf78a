"""The pointcast CLI against a real server: watch a campaign run, read its events, rotate the webhook secret."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.campaigns import wait_for
from tests.support.server import ACCOUNT_ID, BIN, KEY_ID, REGION, SECRET, cli_env, free_port
from tests.test_campaign_run import endpoints, load


def pointcast(server, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        **cli_env(),
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "POINTCAST_URL": server.url,
        "COLUMNS": "160",
    }
    return subprocess.run(
        [str(Path(BIN) / "pointcast"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def campaign(pinpoint, app_id: str, url: str) -> dict[str, Any]:
    load(pinpoint, app_id, endpoints(300))
    segment = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "all"})["SegmentResponse"]
    return pinpoint.create_campaign(
        ApplicationId=app_id,
        WriteCampaignRequest={
            "Name": "cli",
            "SegmentId": segment["Id"],
            "Schedule": {"StartTime": "IMMEDIATE"},
            "MessageConfiguration": {"CustomMessage": {"Data": "x"}},
            "CustomDeliveryConfiguration": {"DeliveryUri": url, "EndpointTypes": ["SMS", "CUSTOM"]},
        },
    )["CampaignResponse"]


def test_watch_and_events(server, pinpoint, app_id, test_ca) -> None:
    from tests.support.server import ACCOUNT_ID
    from tests.support.tls import TLSReceiver

    with TLSReceiver(test_ca, account_id=ACCOUNT_ID) as receiver:
        created = campaign(pinpoint, app_id, receiver.url)
        watched = pointcast(server, "campaigns", "watch", app_id, created["Id"])
        assert watched.returncode == 0, watched.stdout + watched.stderr
        sent = sum(
            1
            for i in endpoints(300)
            if i["ChannelType"] in ("SMS", "CUSTOM") and "EndpointStatus" not in i and "OptOut" not in i
        )
        assert f"COMPLETED: {sent} sent, 0 failed, {300 - sent} skipped" in watched.stdout

    events = pointcast(server, "campaigns", "events", app_id, created["Id"])
    assert events.returncode == 0, events.stderr
    records = [json.loads(line) for line in events.stdout.splitlines()]
    assert len(records) == 300 and {r["event_type"] for r in records} == {"_campaign.send"}
    assert sum(r["attributes"]["campaign_send_status"] == "SUCCESS" for r in records) == sent
    outcomes = pointcast(server, "campaigns", "events", "--outcomes", app_id, created["Id"])
    rows = [json.loads(line) for line in outcomes.stdout.splitlines()]
    assert {row["Status"] for row in rows} == {"SENT", "SKIPPED"}
    batch = next(row["BatchId"] for row in rows if row["BatchId"])
    tries = pointcast(server, "campaigns", "attempts", app_id, created["Id"], batch)
    assert tries.returncode == 0, tries.stderr
    [attempt] = [json.loads(line) for line in tries.stdout.splitlines()]
    assert attempt["Attempt"] == 1 and attempt["StatusCode"] == 200 and attempt["Error"] is None
    missing = pointcast(server, "campaigns", "attempts", app_id, created["Id"], "0" * 32)
    assert missing.returncode == 1 and "has no batch" in missing.stderr


def test_serve_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    """What a user mistypes is named, with what was given; no traceback (several were tracebacks)."""
    (tmp_path / "afile").write_text("")
    cases = [
        ({"POINTCAST_DELIVERY_CONCURRENCY": "abc"}, "POINTCAST_DELIVERY_CONCURRENCY: Input should be a valid integer"),
        ({"POINTCAST_LOG_LEVEL": "loud"}, "POINTCAST_LOG_LEVEL: Input should be"),
        ({"POINTCAST_CREDENTIALS": "garbage"}, "is not in the form AKID:SECRET"),
        ({"POINTCAST_DATA_DIR": str(tmp_path / "afile" / "data")}, "Not a directory"),
    ]
    for env, words in cases:
        run_env = {**cli_env(), "POINTCAST_DATA_DIR": str(tmp_path / "data"), "POINTCAST_PORT": "1", "COLUMNS": "200"}
        result = subprocess.run(
            [str(Path(BIN) / "pointcast"), "serve"], env={**run_env, **env}, capture_output=True, text=True, timeout=60
        )
        assert result.returncode in (1, 2) and words in result.stderr, (env, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_relative_data_dir_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    """The default is ./pointcast-data. Functions' LAMBDA_TASK_ROOT lies under it and workers run in that directory,
    so a relative path there named nothing: Node.js functions could not load, file paths in Python ones broke."""
    from pointcast.settings import Settings

    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == tmp_path / "pointcast-data"
    assert Settings(data_dir=Path("here")).data_dir == tmp_path / "here"


def test_cli_errors_are_one_line(server, app_id) -> None:
    missing = pointcast(server, "campaigns", "events", app_id, "0" * 32)
    assert missing.returncode == 1 and "NotFoundException" in missing.stderr and "Traceback" not in missing.stderr
    secret = pointcast(server, "apps", "webhook-secret", app_id)
    assert secret.returncode == 0 and secret.stdout.startswith("whsec_")
    assert pointcast(server, "apps", "webhook-secret", "--delete", app_id).stdout.strip() == "deleted"


def test_cli_mistakes_are_one_line(server, tmp_path: Path) -> None:
    """A URL without its scheme, a profile that does not exist, a URL that is not pointcast's: one line each (they
    were tracebacks); and serve refuses port 0, which functions would be told."""
    not_pointcast = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port := free_port())],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10, "the plain HTTP server")
        cases = [
            (["--endpoint-url", server.url.removeprefix("http://")], "must be an http:// or https:// URL"),
            (["--profile", "nosuch"], "could not be found"),
            (["--endpoint-url", f"http://127.0.0.1:{port}"], "no JSON: is it pointcast's URL?"),
        ]
        for extra, words in cases:
            result = pointcast(server, "functions", "logs", "fn", *extra)
            assert result.returncode == 1 and words in result.stderr, (extra, result.stderr)
            assert "Traceback" not in result.stderr, result.stderr
    finally:
        not_pointcast.terminate()
        not_pointcast.wait(timeout=10)
    run_env = {**cli_env(), "POINTCAST_DATA_DIR": str(tmp_path / "data"), "POINTCAST_PORT": "0", "COLUMNS": "200"}
    refused = subprocess.run([str(Path(BIN) / "pointcast"), "serve"], env=run_env, capture_output=True, text=True)
    assert (
        refused.returncode in (1, 2) and "POINTCAST_PORT: Input should be greater than or equal to 1" in refused.stderr
    )
    bad_region = {**run_env, "POINTCAST_PORT": str(free_port()), "POINTCAST_REGION": "nowhere!!"}
    refused = subprocess.run([str(Path(BIN) / "pointcast"), "serve"], env=bad_region, capture_output=True, text=True)
    assert refused.returncode in (1, 2) and "POINTCAST_REGION must be a region name" in refused.stderr, refused.stderr


def test_functions_logs_takes_names_as_names_and_says_when_there_is_nothing(server, lam) -> None:
    """A name with URL syntax in it was sent into the URL (``fn?x=1`` asked for ``fn``'s records, ``%zz`` printed
    nothing); a qualifier other than $LATEST showed the function's records; an empty answer printed nothing."""
    from tests.support.functions import deploy

    name = f"cli-logs-{free_port()}"
    deploy(lam, name, "def handler(event, context):\n    return 1\n", allow=None)
    empty = pointcast(server, "functions", "logs", name)
    assert empty.returncode == 0 and empty.stdout == "" and f"no invocations of {name} are recorded" in empty.stderr
    lam.invoke(FunctionName=name, Payload=b"{}")
    shown = pointcast(server, "functions", "logs", name)
    assert shown.returncode == 0 and "Invoke" in shown.stdout and "Success" in shown.stdout, shown.stderr
    assert pointcast(server, "functions", "logs", f"{name}:$LATEST").stdout == shown.stdout
    for ref, words in [
        (f"{name}?x=1", "is not a function's name"),
        (f"{name}%zz", "is not a function's name"),
        (f"{name}:live", f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}:live\n"),
        (f"{name}:1", f"function:{name}:1\n"),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}:v1", f"Function not found: arn:aws:lambda:{REGION}"),
    ]:
        refused = pointcast(server, "functions", "logs", ref)
        assert refused.returncode == 1 and words in refused.stderr, (ref, refused.stderr)
        assert "function:arn:" not in refused.stderr, refused.stderr


def test_watch_says_a_campaign_scheduled_for_later_has_not_started(server, pinpoint, app_id, test_ca) -> None:
    from tests.support.server import ACCOUNT_ID
    from tests.support.tls import TLSReceiver

    with TLSReceiver(test_ca, account_id=ACCOUNT_ID) as receiver:
        segment = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "later"})
        later = pinpoint.create_campaign(
            ApplicationId=app_id,
            WriteCampaignRequest={
                "Name": "later",
                "SegmentId": segment["SegmentResponse"]["Id"],
                "Schedule": {"StartTime": "2099-01-01T00:00:00Z"},
                "MessageConfiguration": {"CustomMessage": {"Data": "x"}},
                "CustomDeliveryConfiguration": {"DeliveryUri": receiver.url, "EndpointTypes": ["CUSTOM"]},
            },
        )["CampaignResponse"]
    watched = pointcast(server, "campaigns", "watch", "--timeout", "1", app_id, later["Id"])
    assert watched.returncode == 2, watched.stdout + watched.stderr
    assert "not started: scheduled for 2099-01-01T00:00:00Z" in watched.stdout
    assert "the campaign has not started (SCHEDULED, start 2099-01-01T00:00:00Z)" in watched.stdout

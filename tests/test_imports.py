"""Imported segments: CreateImportJob over local paths, file:// and https:// files, and campaigns on the result."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from aiohttp import web

from pointcast.imports import formats
from pointcast.imports import repository as imports_repo
from pointcast.imports import service as imports_service
from pointcast.settings import Settings
from pointcast.store import Database
from pointcast.store import models as m
from tests.conftest import make_server, postgres_url
from tests.support.server import ACCOUNT_ID, PostgresSchema
from tests.support.tls import TestCA, TLSReceiver

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/pointcast-import"
DATES = ("CreationDate", "EffectiveDate")


@pytest.fixture
def receiver(test_ca: TestCA) -> Iterator[TLSReceiver]:
    with TLSReceiver(test_ca, account_id=ACCOUNT_ID) as rx:
        yield rx


def wait_job(pinpoint, app_id: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = pinpoint.get_import_job(ApplicationId=app_id, JobId=job_id)["ImportJobResponse"]
        if job["JobStatus"] in ("COMPLETED", "FAILED"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"import job did not finish: {job}")
        time.sleep(0.05)


def run_import(pinpoint, app_id: str, url: str, fmt: str, **extra: Any) -> dict[str, Any]:
    request = {"S3Url": url, "Format": fmt, "RoleArn": ROLE, **extra}
    created = pinpoint.create_import_job(ApplicationId=app_id, ImportJobRequest=request)["ImportJobResponse"]
    assert created["JobStatus"] == "CREATED" and created["Type"] == "IMPORT"
    return wait_job(pinpoint, app_id, created["Id"])


def endpoint(pinpoint, app_id: str, endpoint_id: str) -> dict[str, Any]:
    got = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId=endpoint_id)["EndpointResponse"]
    assert all(got.pop(k) for k in DATES)
    assert got.pop("CohortId")
    return got


CSV_HEADER = (
    "ChannelType,Address,Id,Location.Country,Location.Latitude,Demographic.Platform,Attributes.Interests,"
    "User.UserId,User.UserAttributes.FirstName,Metrics.score\n"
)
# Lines 2..14: four good rows, eight bad ones, one blank.
CSV_ROWS = [
    'SMS,+12065550100,csv-1,US,47.6,Android,"Cooking, Fishing",user-1,Ann,5\n',
    "EMAIL,ann@example.com,csv-2,,,,Travel,user-1,,\n",
    "FAX,+12065550101,csv-3,,,,,,,\n",  # line 4: not a ChannelType
    "SMS,+12065550102,csv-4,,,,,,,lots\n",  # line 5: not a number
    "SMS,+12065550103,csv-5,US\n",  # line 6: too few values
    "\n",  # line 7: blank, skipped
    f"SMS,+12065550104,csv-6,,,,{'x' * 101},,,\n",  # line 8: attribute value too long
    ",,csv-7,US,,,,,,\n",  # line 9: new endpoint without ChannelType and Address
    "CUSTOM,hook-8,,,,,,,,\n",  # line 10: no Id: a new endpoint with a generated id
    "SMS,+12065550105,csv-9,,,,,,,1e400\n",  # line 11: not a finite number
    'SMS,+12065550106,csv-10,,,,"broken\n',  # line 12..13: unterminated quote runs to the end
    "SMS,+12065550107,csv-11,,,,,,,\n",
]
CSV_FAILURES = [
    "Line 4: Endpoint.ChannelType must be one of 'PUSH', 'GCM', 'APNS', 'APNS_SANDBOX', 'APNS_VOIP', "
    "'APNS_VOIP_SANDBOX', 'ADM', 'SMS', 'VOICE', 'EMAIL', 'BAIDU', 'CUSTOM' or 'IN_APP' (got 'FAX')",
    "Line 5: Metrics.score must be a number (got 'lots')",
    "Line 6: has 4 values but the header has 10 columns",
    "Line 8: Endpoint.Attributes.Interests[0] is 101 characters; an attribute value may have at most 100",
    "Line 9: Endpoint.ChannelType and Address required to create an endpoint",
    "Line 11: Metrics.score must be a number (got '1e400')",
    "Line 12: is not valid CSV (unexpected end of data)",
]


def test_csv_import_by_path(pinpoint, app_id, tmp_path: Path) -> None:
    path = tmp_path / "endpoints.csv"
    path.write_text(CSV_HEADER + "".join(CSV_ROWS))
    job = run_import(pinpoint, app_id, str(path), "CSV", DefineSegment=True, SegmentName="imported")

    assert job["JobStatus"] == "COMPLETED", job
    assert job["Failures"] == CSV_FAILURES
    assert (job["TotalProcessed"], job["TotalFailures"]) == (10, 7)
    assert (job["CompletedPieces"], job["FailedPieces"], job["TotalPieces"]) == (1, 0, 1)
    assert job["CompletionDate"] >= job["CreationDate"]
    segment_id = job["Definition"]["SegmentId"]
    assert job["Definition"] == {
        "S3Url": str(path),
        "Format": "CSV",
        "RoleArn": ROLE,
        "DefineSegment": True,
        "RegisterEndpoints": True,
        "SegmentName": "imported",
        "SegmentId": segment_id,
    }

    assert endpoint(pinpoint, app_id, "csv-1") == {
        "ApplicationId": app_id,
        "Id": "csv-1",
        "ChannelType": "SMS",
        "Address": "+12065550100",
        "EndpointStatus": "ACTIVE",
        "OptOut": "NONE",
        "Location": {"Country": "US", "Latitude": 47.6},
        "Demographic": {"Platform": "Android"},
        "Attributes": {"Interests": ["Cooking", "Fishing"]},
        "Metrics": {"score": 5.0},
        "User": {"UserId": "user-1", "UserAttributes": {"FirstName": ["Ann"]}},
    }
    assert endpoint(pinpoint, app_id, "csv-2")["Attributes"] == {"Interests": ["Travel"]}
    for missing in ("csv-3", "csv-4", "csv-5", "csv-6", "csv-7", "csv-9", "csv-10", "csv-11"):
        with pytest.raises(pinpoint.exceptions.NotFoundException):
            pinpoint.get_endpoint(ApplicationId=app_id, EndpointId=missing)

    segment = pinpoint.get_segment(ApplicationId=app_id, SegmentId=segment_id)["SegmentResponse"]
    assert segment["SegmentType"] == "IMPORT" and segment["Name"] == "imported" and segment["Version"] == 1
    assert segment["ImportDefinition"] == {
        "ChannelCounts": {"CUSTOM": 1, "EMAIL": 1, "SMS": 1},
        "ExternalId": "",  # the model requires it: empty when the job had none
        "Format": "CSV",
        "RoleArn": ROLE,
        "S3Url": str(path),
        "Size": 3,
    }
    assert segment["Arn"] == f"arn:aws:mobiletargeting:us-east-1:{ACCOUNT_ID}:apps/{app_id}/segments/{segment_id}"
    listed = pinpoint.get_import_jobs(ApplicationId=app_id)["ImportJobsResponse"]["Item"]
    assert listed == [job]
    by_segment = pinpoint.get_segment_import_jobs(ApplicationId=app_id, SegmentId=segment_id)["ImportJobsResponse"]
    assert by_segment["Item"] == [job]


JSON_LINES = [
    {"Id": "js-1", "ChannelType": "EMAIL", "Address": "a@example.com", "Attributes": {"Team": ["red", "blue"]}},
    {"Id": "js-2", "ChannelType": "SMS", "Address": "+1", "User": {"UserId": "u2"}, "Metrics": {"visits": 3}},
    "{not json",  # line 3
    [1, 2],  # line 4
    {"Id": "js-5", "ChannelType": "SMS", "Address": "+5", "Color": "red"},  # line 5: not a member
    {"Id": "js-6", "ChannelType": "SMS", "Address": "+6", "Attributes": {"Team": "red"}},  # line 6: not a list
    {"Id": "js-7", "ChannelType": "SMS", "Address": "+7", "OptOut": "SOMETIMES"},  # line 7
    "",  # line 8: blank
    {"Id": "js-1", "Demographic": {"Timezone": "Europe/Paris"}, "Attributes": {"Size": ["L"]}},  # merges into js-1
    {"ChannelType": "CUSTOM", "Address": "custom-10"},  # line 10: generated id
    {"Id": "js-11", "ChannelType": "SMS", "Address": "nul\u0000byte"},  # line 11
]


def json_failures() -> list[str]:
    try:
        orjson.loads("{not json")
    except orjson.JSONDecodeError as exc:
        parse_error = str(exc)
    return [
        f"Line 3: is not valid JSON ({parse_error})",
        "Line 4: must be a JSON object, not an array",
        "Line 5: Endpoint.Color is not a member of this shape",
        "Line 6: Endpoint.Attributes.Team input should be a valid list (got 'red')",
        "Line 7: Endpoint.OptOut must be one of ALL, NONE (got 'SOMETIMES')",
        "Line 11: Endpoint.Address contains the NUL character (\\u0000), which strings may not contain",
    ]


def ndjson(lines: list[Any]) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def test_ndjson_import_by_file_url(pinpoint, app_id, tmp_path: Path) -> None:
    path = tmp_path / "endpoints with space.json"
    path.write_text(ndjson(JSON_LINES))
    url = "file://" + str(path).replace(" ", "%20")
    job = run_import(pinpoint, app_id, url, "JSON", DefineSegment=True, ExternalId="ext-1")

    assert job["JobStatus"] == "COMPLETED", job
    assert job["Failures"] == json_failures()
    assert (job["TotalProcessed"], job["TotalFailures"]) == (10, 6)
    assert endpoint(pinpoint, app_id, "js-1") == {
        "ApplicationId": app_id,
        "Id": "js-1",
        "ChannelType": "EMAIL",
        "Address": "a@example.com",
        "EndpointStatus": "ACTIVE",
        "OptOut": "NONE",
        "Demographic": {"Timezone": "Europe/Paris"},
        "Attributes": {"Team": ["red", "blue"], "Size": ["L"]},
    }
    assert endpoint(pinpoint, app_id, "js-2")["Metrics"] == {"visits": 3}
    segment_id = job["Definition"]["SegmentId"]
    segment = pinpoint.get_segment(ApplicationId=app_id, SegmentId=segment_id)["SegmentResponse"]
    assert segment["SegmentType"] == "IMPORT" and "Name" not in segment
    assert segment["ImportDefinition"] == {
        "ChannelCounts": {"CUSTOM": 1, "EMAIL": 1, "SMS": 1},
        "ExternalId": "ext-1",
        "Format": "JSON",
        "RoleArn": ROLE,
        "S3Url": url,
        "Size": 3,  # js-1 (twice), js-2 and the generated one
    }


def test_https_import_updates_a_segment_as_a_new_version(pinpoint, app_id, test_ca, tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    first.write_text(ndjson([{"Id": "h-1", "ChannelType": "SMS", "Address": "+1"}]))
    job = run_import(pinpoint, app_id, str(first), "JSON", DefineSegment=True, SegmentName="v1")
    segment_id = job["Definition"]["SegmentId"]

    body = CSV_HEADER + "EMAIL,b@example.com,h-2,,,,,,,\nSMS,+3,h-3,,,,,,,\n"
    with TLSReceiver(test_ca, responder=lambda record: (200, {"Content-Type": "text/csv"}, body)) as rx:
        url = rx.base_url + "/exports/endpoints.csv"
        second = run_import(pinpoint, app_id, url, "CSV", SegmentId=segment_id, SegmentName="v2")
        [request] = rx.requests
        assert (request.method, request.path) == ("GET", "/exports/endpoints.csv")

    assert second["JobStatus"] == "COMPLETED" and second["TotalProcessed"] == 2 and second["Failures"] == []
    assert second["Definition"]["SegmentId"] == segment_id and second["Definition"]["DefineSegment"] is True
    segment = pinpoint.get_segment(ApplicationId=app_id, SegmentId=segment_id)["SegmentResponse"]
    assert (segment["Version"], segment["Name"], segment["SegmentType"]) == (2, "v2", "IMPORT")
    assert segment["ImportDefinition"]["S3Url"] == url
    assert segment["ImportDefinition"]["Size"] == 2
    assert segment["ImportDefinition"]["ChannelCounts"] == {"EMAIL": 1, "SMS": 1}
    old = pinpoint.get_segment_version(ApplicationId=app_id, SegmentId=segment_id, Version="1")["SegmentResponse"]
    assert old["ImportDefinition"]["Size"] == 1 and old["Name"] == "v1"
    assert endpoint(pinpoint, app_id, "h-2")["Address"] == "b@example.com"
    jobs = pinpoint.get_segment_import_jobs(ApplicationId=app_id, SegmentId=segment_id)["ImportJobsResponse"]["Item"]
    assert [j["Id"] for j in jobs] == [job["Id"], second["Id"]]


def test_https_failures_end_the_job(pinpoint, app_id, test_ca) -> None:
    with TLSReceiver(test_ca, responder=lambda record: (404, {}, b"no such object")) as rx:
        job = run_import(pinpoint, app_id, rx.url, "JSON")
    assert job["JobStatus"] == "FAILED"
    assert job["Failures"] == [f"GET {rx.url} answered HTTP 404"]
    assert (job["TotalProcessed"], job["FailedPieces"], job["TotalPieces"]) == (0, 1, 1)
    assert "SegmentId" not in job["Definition"] and job["Definition"]["DefineSegment"] is False


def test_import_without_a_segment(pinpoint, app_id, test_ca) -> None:
    body = b'{"Id": "plain-1", "ChannelType": "SMS", "Address": "+1"}\n'
    with TLSReceiver(test_ca, responder=lambda record: (200, {}, body)) as rx:
        job = run_import(pinpoint, app_id, rx.url, "JSON", RegisterEndpoints=True)
    assert (job["JobStatus"], job["TotalProcessed"], job["Definition"]["DefineSegment"]) == ("COMPLETED", 1, False)
    assert "SegmentId" not in job["Definition"]
    assert endpoint(pinpoint, app_id, "plain-1")["Address"] == "+1"
    assert [j["Id"] for j in pinpoint.get_import_jobs(ApplicationId=app_id)["ImportJobsResponse"]["Item"]] == [
        job["Id"]
    ]


def test_file_level_failures(pinpoint, app_id, tmp_path: Path) -> None:
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("ChannelType,Address,Colour\nSMS,+1,red\n")
    job = run_import(pinpoint, app_id, str(bad_header), "CSV", DefineSegment=True)
    assert job["JobStatus"] == "FAILED" and job["TotalProcessed"] == 0
    assert job["Failures"] == [
        "The CSV header's column 3 'Colour' is not an endpoint member (columns are member paths such as "
        "ChannelType, Address, Id, Location.Country, Demographic.Platform, User.UserId, Attributes.NAME, "
        "Metrics.NAME, User.UserAttributes.NAME)"
    ]
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_segment(ApplicationId=app_id, SegmentId=job["Definition"]["SegmentId"])

    empty = tmp_path / "empty.json"
    empty.write_text("\n\n")
    job = run_import(pinpoint, app_id, str(empty), "JSON")
    assert job["JobStatus"] == "FAILED"
    assert job["Failures"] == [f"{empty} holds no endpoint definitions (JSON)"]


def test_create_import_job_refuses(pinpoint, app_id, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(CSV_HEADER)

    def refused(message: str, **request: Any) -> None:
        body = {"S3Url": str(path), "Format": "CSV", "RoleArn": ROLE, **request}
        with pytest.raises(pinpoint.exceptions.BadRequestException) as caught:
            pinpoint.create_import_job(ApplicationId=app_id, ImportJobRequest=body)
        assert caught.value.response["Error"]["Message"] == message

    accepted = "pointcast reads local paths (/data/endpoints.csv), file:// URLs and https:// URLs"
    refused(
        f"ImportJobRequest.S3Url 's3://bucket/endpoints.csv': pointcast cannot read from Amazon S3; {accepted}",
        S3Url="s3://bucket/endpoints.csv",
    )
    refused(f"ImportJobRequest.S3Url 'http://h/x.csv': http:// is not accepted; {accepted}", S3Url="http://h/x.csv")
    refused(f"ImportJobRequest.S3Url 'x.csv': a local path must be absolute; {accepted}", S3Url="x.csv")
    refused(
        f"ImportJobRequest.S3Url '{tmp_path}/none.csv': no readable file at {tmp_path}/none.csv on the server",
        S3Url=f"{tmp_path}/none.csv",
    )
    refused(
        "ImportJobRequest.S3Url 'file://elsewhere/x.csv': a file:// URL must name a file on this server "
        "(no host, or localhost)",
        S3Url="file://elsewhere/x.csv",
    )
    refused(
        "ImportJobRequest.RegisterEndpoints false is not supported: pointcast always registers the imported "
        "endpoints (an imported segment's members are endpoints of the application)",
        RegisterEndpoints=False,
    )
    refused("ImportJobRequest.Format must be one of 'CSV' or 'JSON' (got 'XML')", Format="XML")
    dimensional = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "d"})["SegmentResponse"]
    refused(
        f"ImportJobRequest.SegmentId: segment '{dimensional['Id']}' is a DIMENSIONAL segment; "
        "an import job can only update an IMPORT segment",
        SegmentId=dimensional["Id"],
    )
    refused(
        "ImportJobRequest.SegmentId names a segment to update, which needs DefineSegment true",
        SegmentId=dimensional["Id"],
        DefineSegment=False,
    )
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.create_import_job(
            ApplicationId=app_id,
            ImportJobRequest={"S3Url": str(path), "Format": "CSV", "RoleArn": ROLE, "SegmentId": "nope"},
        )
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_import_job(ApplicationId=app_id, JobId="0" * 32)
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_segment_import_jobs(ApplicationId=app_id, SegmentId="0" * 32)
    assert pinpoint.get_import_jobs(ApplicationId=app_id)["ImportJobsResponse"]["Item"] == []


# --- campaigns on imported segments --------------------------------------------------------------------------------


def wait_campaign(pinpoint, app_id: str, campaign_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        campaign = pinpoint.get_campaign(ApplicationId=app_id, CampaignId=campaign_id)["CampaignResponse"]
        if campaign["State"]["CampaignStatus"] == "COMPLETED":
            return
        time.sleep(0.2)
    raise AssertionError(f"campaign {campaign_id} did not complete: {campaign['State']}")


def campaign_on(pinpoint, app_id: str, segment_id: str, url: str, name: str) -> str:
    request = {
        "Name": name,
        "SegmentId": segment_id,
        "Schedule": {"StartTime": "IMMEDIATE"},
        "MessageConfiguration": {"CustomMessage": {"Data": name}},
        "CustomDeliveryConfiguration": {"DeliveryUri": url, "EndpointTypes": ["CUSTOM"]},
    }
    return str(pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"]["Id"])


def delivered(receiver: TLSReceiver, campaign_id: str) -> list[str]:
    ids: list[str] = []
    for post in receiver.requests:
        if post.method == "POST" and json.loads(post.body)["CampaignId"] == campaign_id:
            ids += json.loads(post.body)["Endpoints"]
    return ids


def test_campaign_on_imported_segment_targets_exactly_its_endpoints(
    pinpoint, app_id, receiver: TLSReceiver, tmp_path: Path
) -> None:
    others = [
        {"Id": f"other-{i}", "ChannelType": "CUSTOM", "Address": f"o{i}", "Attributes": {"Team": ["blue"]}}
        for i in range(60)
    ]
    for start in range(0, len(others), 100):
        pinpoint.update_endpoints_batch(
            ApplicationId=app_id, EndpointBatchRequest={"Item": others[start : start + 100]}
        )
    rows = [f"CUSTOM,i{i},imp-{i:03d},{'blue' if i % 3 else 'red'}\n" for i in range(75)]
    rows.append("CUSTOM,o0-new,other-0,red\n")  # an existing endpoint, updated by the import: a member too
    path = tmp_path / "audience.csv"
    path.write_text("ChannelType,Address,Id,Attributes.Team\n" + "".join(rows))
    job = run_import(pinpoint, app_id, str(path), "CSV", DefineSegment=True, SegmentName="audience")
    assert (job["JobStatus"], job["TotalProcessed"], job["TotalFailures"]) == ("COMPLETED", 76, 0)
    imported_id = job["Definition"]["SegmentId"]
    members = {f"imp-{i:03d}" for i in range(75)} | {"other-0"}
    blue_members = {f"imp-{i:03d}" for i in range(75) if i % 3}

    group = pinpoint.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "imported and blue",
            "SegmentGroups": {
                "Include": "ALL",
                "Groups": [
                    {
                        "SourceSegments": [{"Id": imported_id}],
                        "SourceType": "ANY",
                        "Type": "ALL",
                        "Dimensions": [{"Attributes": {"Team": {"AttributeType": "INCLUSIVE", "Values": ["blue"]}}}],
                    }
                ],
            },
        },
    )["SegmentResponse"]
    outside = pinpoint.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "not imported",
            "SegmentGroups": {"Groups": [{"SourceSegments": [{"Id": imported_id}], "SourceType": "NONE"}]},
        },
    )["SegmentResponse"]

    # SQL cannot decide the date criterion: the endpoints with a Team are asked the Python predicate, which sees the
    # imported segment through its stand-in attribute (no Team value is a date, so only members are in).
    either = pinpoint.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "imported, or a Team after 2000",
            "SegmentGroups": {
                "Include": "ANY",
                "Groups": [
                    {"SourceSegments": [{"Id": imported_id}]},
                    {"Dimensions": [{"Attributes": {"Team": {"AttributeType": "AFTER", "Values": ["2000-01-01"]}}}]},
                ],
            },
        },
    )["SegmentResponse"]

    direct = campaign_on(pinpoint, app_id, imported_id, receiver.url, "direct")
    grouped = campaign_on(pinpoint, app_id, group["Id"], receiver.url, "grouped")
    excluded = campaign_on(pinpoint, app_id, outside["Id"], receiver.url, "excluded")
    asked = campaign_on(pinpoint, app_id, either["Id"], receiver.url, "asked")
    for campaign_id in (direct, grouped, excluded, asked):
        wait_campaign(pinpoint, app_id, campaign_id)

    assert sorted(delivered(receiver, direct)) == sorted(members)
    assert sorted(delivered(receiver, grouped)) == sorted(blue_members)
    assert sorted(delivered(receiver, excluded)) == sorted(f"other-{i}" for i in range(1, 60))
    assert sorted(delivered(receiver, asked)) == sorted(members)


# --- size and memory -----------------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_import_of_2000_rows(server, pinpoint, app_id, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("ChannelType,Address,Id,Attributes.Team,User.UserId,Metrics.score\n")
        for i in range(2000):
            out.write(f"{'SMS' if i % 2 else 'EMAIL'},addr-{i},big-{i:05d},team-{i % 7},user-{i},{i}\n")
    pid = server.process.pid
    before = rss_kib(pid) if Path(f"/proc/{pid}/status").exists() else None
    started = time.monotonic()
    job = run_import(pinpoint, app_id, str(path), "CSV", DefineSegment=True)
    elapsed = time.monotonic() - started
    assert (job["JobStatus"], job["TotalProcessed"], job["TotalFailures"]) == ("COMPLETED", 2000, 0)
    assert (job["CompletedPieces"], job["TotalPieces"]) == (4, 4)  # pieces of 500
    segment = pinpoint.get_segment(ApplicationId=app_id, SegmentId=job["Definition"]["SegmentId"])["SegmentResponse"]
    assert segment["ImportDefinition"]["Size"] == 2000
    assert segment["ImportDefinition"]["ChannelCounts"] == {"EMAIL": 1000, "SMS": 1000}
    assert endpoint(pinpoint, app_id, "big-01999")["Metrics"] == {"score": 1999.0}
    if before is not None:
        grown_mib = (rss_kib(pid) - before) / 1024
        print(f"2,000 rows imported in {elapsed:.2f} s; server RSS grew {grown_mib:.1f} MiB")
        assert grown_mib < 64
    assert elapsed < 30


class _Endless(io.RawIOBase):
    """``count`` generated lines, produced as they are read (the test's own memory stays flat too)."""

    def __init__(self, header: bytes, line: bytes, count: int) -> None:
        self.pending = bytearray(header)
        self.line, self.done, self.count = line, 0, count

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self.pending) < len(buffer) and self.done < self.count:
            self.pending += self.line.replace(b"#", str(self.done).encode())
            self.done += 1
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        del self.pending[:size]
        return size


@pytest.mark.parametrize("fmt", ["CSV", "JSON"])
def test_reading_a_file_streams_it(fmt: str) -> None:
    """100,000 records (5 to 10 MB) read with a peak well under 1 MiB: memory is bounded by a line, not the file."""
    if fmt == "CSV":
        raw = _Endless(b"ChannelType,Address,Id,Attributes.Interests\n", b'SMS,+1#,id-#,"a,b,c"\n', 100_000)
    else:
        line = b'{"ChannelType": "SMS", "Address": "+1#", "Id": "id-#", "Attributes": {"Interests": ["a", "b"]}}\n'
        raw = _Endless(b"", line, 100_000)
    assert list(formats.read(fmt, io.BytesIO(b"Id\nx\n" if fmt == "CSV" else b"{}\n")))  # load the model first
    tracemalloc.start()
    try:
        count = sum(1 for record in formats.read(fmt, io.BufferedReader(raw)) if record.item)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 1024 * 1024, f"peak {peak} bytes"


# --- a restart in the middle of a job ------------------------------------------------------------------------------


class StallingSource:
    """An HTTPS server whose first answer sends ``head`` and then stalls; later answers send ``head + tail``."""

    def __init__(self, ca: TestCA, head: bytes, tail: bytes) -> None:
        self.ca, self.head, self.tail = ca, head, tail
        self.requests = 0
        self.release = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        first = self.requests == 1
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        await response.prepare(request)
        await response.write(self.head)
        if first:
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return response  # the client is long gone
        await response.write(self.tail)
        await response.write_eof()
        return response

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.25)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ca.server_ssl_context())
        await site.start()
        self.port = self.runner.addresses[0][1]

    def __enter__(self) -> StallingSource:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/endpoints.csv"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "crash"])
def test_a_job_interrupted_by_a_restart_resumes(backend, ca_bundle, test_ca, tmp_path: Path, how: int) -> None:
    rows = [f"CUSTOM,r{i},res-{i:04d}\n".encode() for i in range(1200)]
    head = b"ChannelType,Address,Id\n" + b"".join(rows[:700])
    server, schema = make_server(backend, tmp_path / "srv", ca_bundle)
    try:
        with StallingSource(test_ca, head, b"".join(rows[700:])) as source:
            server.start()
            pp = server.pinpoint()
            app_id = pp.create_app(CreateApplicationRequest={"Name": "resume"})["ApplicationResponse"]["Id"]
            request = {"S3Url": source.url, "Format": "CSV", "RoleArn": ROLE, "DefineSegment": True}
            job_id = pp.create_import_job(ApplicationId=app_id, ImportJobRequest=request)["ImportJobResponse"]["Id"]
            deadline = time.monotonic() + 30
            while True:  # the first 500 rows are committed; the rest of the file has not arrived
                job = pp.get_import_job(ApplicationId=app_id, JobId=job_id)["ImportJobResponse"]
                if job["TotalProcessed"] == 500:
                    break
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
            assert (job["JobStatus"], job["CompletedPieces"]) == ("PROCESSING", 1)
            assert server.process is not None
            old_pid = server.process.pid
            server.stop(how)
            server.start()
            assert (
                server.process is not None
                and server.process.pid != old_pid
                and not os.path.exists(f"/proc/{old_pid}/status")
            )
            pp = server.pinpoint()
            job = wait_job(pp, app_id, job_id)  # asking about it resumes it
            assert source.requests == 2
        assert (job["JobStatus"], job["TotalProcessed"], job["TotalFailures"], job["Failures"]) == (
            "COMPLETED",
            1200,
            0,
            [],
        )
        assert (job["CompletedPieces"], job["TotalPieces"]) == (3, 3)
        segment = pp.get_segment(ApplicationId=app_id, SegmentId=job["Definition"]["SegmentId"])["SegmentResponse"]
        assert segment["ImportDefinition"]["Size"] == 1200
        assert pp.get_endpoint(ApplicationId=app_id, EndpointId="res-1199")["EndpointResponse"]["Address"] == "r1199"
    finally:
        server.stop()
        if schema:
            schema.drop()


def _members(db: Database, job_ids: list[str]) -> dict[str, int]:
    """How many member rows each of these import jobs has in the store."""
    members = m.import_members
    with db.read() as conn:
        query = (
            sa.select(members.c.job_id, sa.func.count()).where(members.c.job_id.in_(job_ids)).group_by(members.c.job_id)
        )
        return {job_id: int(n) for job_id, n in conn.execute(query)}


def test_deleting_an_imported_segment_deletes_its_members(server, pinpoint, app_id, tmp_path: Path) -> None:
    def imported(name: str, ids: list[str], **extra: Any) -> dict[str, Any]:
        path = tmp_path / f"{name}.json"
        path.write_text(ndjson([{"Id": i, "ChannelType": "SMS", "Address": f"+1{n}"} for n, i in enumerate(ids)]))
        job = run_import(pinpoint, app_id, str(path), "JSON", **extra)
        assert job["JobStatus"] == "COMPLETED", job
        return job

    first = imported("v1", ["d-1", "d-2", "d-3"], DefineSegment=True)
    segment_id = first["Definition"]["SegmentId"]
    second = imported("v2", ["d-3", "d-4"], SegmentId=segment_id)  # a second version of the same segment
    other = imported("other", ["d-1"], DefineSegment=True)  # another segment with an endpoint in common
    jobs = [first["Id"], second["Id"], other["Id"]]
    settings = Settings(data_dir=server.data_dir, database_url=server.env.get("POINTCAST_DATABASE_URL"))
    db = Database(settings.resolved_database_url())
    try:
        assert _members(db, jobs) == {first["Id"]: 3, second["Id"]: 2, other["Id"]: 1}
        pinpoint.delete_segment(ApplicationId=app_id, SegmentId=segment_id)
        assert _members(db, jobs) == {other["Id"]: 1}  # only the segment that is left keeps its members
    finally:
        db.dispose()
    listed = pinpoint.get_import_jobs(ApplicationId=app_id)["ImportJobsResponse"]["Item"]
    assert set(jobs) <= {j["Id"] for j in listed}  # the jobs stay, as their history
    assert endpoint(pinpoint, app_id, "d-4")["Address"] == "+11"  # and so do the endpoints they wrote
    other_segment = pinpoint.get_segment(ApplicationId=app_id, SegmentId=other["Definition"]["SegmentId"])
    assert other_segment["SegmentResponse"]["ImportDefinition"]["Size"] == 1


def test_an_imported_segment_takes_no_dimensions(pinpoint, app_id, tmp_path: Path) -> None:
    """Its members are what its jobs wrote: Dimensions would be stored and ignored, so they are refused (a segment
    group with it as a source narrows it). Its name may change."""
    path = tmp_path / "people.json"
    path.write_text(ndjson([{"Id": "m1", "ChannelType": "SMS", "Address": "+1", "Attributes": {"Team": ["blue"]}}]))
    job = run_import(pinpoint, app_id, str(path), "JSON", DefineSegment=True)
    segment_id = job["Definition"]["SegmentId"]
    narrowing = {"Dimensions": {"Attributes": {"Team": {"Values": ["blue"]}}}}
    with pytest.raises(pinpoint.exceptions.BadRequestException, match=r"is an IMPORT segment.*SourceSegment"):
        pinpoint.update_segment(ApplicationId=app_id, SegmentId=segment_id, WriteSegmentRequest=narrowing)
    renamed = pinpoint.update_segment(ApplicationId=app_id, SegmentId=segment_id, WriteSegmentRequest={"Name": "new"})
    assert renamed["SegmentResponse"]["Name"] == "new" and "Dimensions" not in renamed["SegmentResponse"]
    group = {"Groups": [{"SourceSegments": [{"Id": segment_id}], "Dimensions": [narrowing["Dimensions"]]}]}
    pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "blue", "SegmentGroups": group})
    # SourceSegments: "more than one dimensional segment or only one imported segment" (the model).
    other = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "all"})["SegmentResponse"]
    for pair in ([segment_id, other["Id"]], [other["Id"], segment_id], [segment_id, segment_id]):
        two = {"Groups": [{"SourceSegments": [{"Id": i} for i in pair]}]}
        with pytest.raises(pinpoint.exceptions.BadRequestException, match="must be the group's only source segment"):
            pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "two", "SegmentGroups": two})


def test_a_failed_job_keeps_no_members(backend: str, tmp_path: Path) -> None:
    """A job that fails defines no segment: the endpoint ids it wrote before failing are no one's members."""
    schema = PostgresSchema(postgres_url()) if backend == "postgres" else None
    db = Database(Settings(data_dir=tmp_path, database_url=schema.url if schema else None).resolved_database_url())
    try:
        db.migrate()
        doc = {"Id": "job-1", "ApplicationId": "app-1", "JobStatus": "PROCESSING", "Failures": []}
        with db.write() as conn:
            imports_repo.insert(conn, {**doc, "CompletedPieces": 0, "FailedPieces": 0}, "seg-1", "me", "2999-01-01")
            imports_repo.add_members(conn, "app-1", "job-1", ["a", "b"])
            imports_repo.insert(conn, {**doc, "Id": "job-2"}, None, "me", "2999-01-01")
            imports_repo.add_members(conn, "app-1", "job-2", ["a"])
        assert _members(db, ["job-1", "job-2"]) == {"job-1": 2, "job-2": 1}
        with db.write() as conn:
            imports_service.fail(conn, "job-1", "me", "the file went away")
        assert _members(db, ["job-1", "job-2"]) == {"job-2": 1}
        with db.read() as conn:
            failed = imports_repo.row(conn, "job-1").doc
        assert (failed["JobStatus"], failed["Failures"]) == ("FAILED", ["the file went away"])
    finally:
        db.dispose()
        if schema:
            schema.drop()

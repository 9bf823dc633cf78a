"""The Lambda API subset through boto3 and the AWS CLI, as users run them (seed commands with --endpoint-url)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import re
import shutil
import signal
import struct
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import running_server
from tests.support.campaigns import own, wait_for
from tests.support.functions import EVERY_APP, ROLE, deploy, zip_code
from tests.support.pool import alive
from tests.support.server import ACCOUNT_ID, REGION, Server
from tests.support.signing import signed_request

COUNTER = """
import json
calls = 0

def lambda_handler(event, context):
    global calls
    calls += 1
    print("event has", len(event), "members")
    return {"calls": calls, "event": event, "request_id": context.aws_request_id,
            "function": context.function_name, "arn": context.invoked_function_arn,
            "memory": context.memory_limit_in_mb, "remaining": context.get_remaining_time_in_millis()}
"""


KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _name() -> str:
    return f"fn-{uuid.uuid4().hex[:10]}"


def test_create_get_list_update_delete(lam) -> None:
    name = _name()
    created = deploy(lam, name, COUNTER, handler="index.lambda_handler", allow=None, Timeout=7, MemorySize=256,
                     Environment={"Variables": {"COLOUR": "blue"}}, Description="counts")  # fmt: skip
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
    assert created["FunctionArn"] == arn and created["FunctionName"] == name
    assert created["Runtime"] == "python3.12" and created["Handler"] == "index.lambda_handler"
    assert created["Timeout"] == 7 and created["MemorySize"] == 256 and created["State"] == "Active"
    assert created["Environment"] == {"Variables": {"COLOUR": "blue"}} and created["Version"] == "$LATEST"
    for ref in (name, arn, f"{ACCOUNT_ID}:function:{name}", f"{name}:$LATEST"):
        assert lam.get_function_configuration(FunctionName=ref)["RevisionId"] == created["RevisionId"]
    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["CodeSha256"] == created["CodeSha256"]
    code = httpx.get(got["Code"]["Location"], timeout=10)
    assert code.status_code == 200 and zipfile.ZipFile(io.BytesIO(code.content)).read("index.py").decode() == COUNTER
    assert httpx.get(got["Code"]["Location"].split("?")[0] + "?token=bad", timeout=10).status_code == 403
    lam.get_waiter("function_active_v2").wait(FunctionName=name)

    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate() for f in page["Functions"]]
    assert name in names

    updated = lam.update_function_configuration(FunctionName=name, Timeout=9, Environment={"Variables": {}})
    assert updated["Timeout"] == 9 and "Environment" not in updated
    assert updated["RevisionId"] != created["RevisionId"]
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_configuration(FunctionName=name, Timeout=5, RevisionId=created["RevisionId"])
    new_code = lam.update_function_code(FunctionName=name, ZipFile=zip_code({"index.py": COUNTER + "\n# v2\n"}))
    assert new_code["CodeSha256"] != created["CodeSha256"]

    lam.delete_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match=name):
        lam.get_function(FunctionName=name)


def test_invoke_request_response_event_and_tail(lam) -> None:
    name = _name()
    deploy(lam, name, COUNTER, handler="index.lambda_handler", allow=None, MemorySize=192)
    answer = lam.invoke(FunctionName=name, Payload=json.dumps({"a": 1}), LogType="Tail")
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    body = json.loads(answer["Payload"].read())
    assert body["event"] == {"a": 1} and body["calls"] == 1 and body["function"] == name
    assert body["arn"].endswith(f":function:{name}") and body["memory"] == "192"
    assert 0 < body["remaining"] <= 3000
    log = base64.b64decode(answer["LogResult"]).decode()
    assert "event has 1 members" in log and f"START RequestId: {body['request_id']}" in log
    report = re.search(
        r"REPORT RequestId: \S+\tDuration: ([0-9.]+) ms\tBilled Duration: (\d+) ms\tMemory Size: 192 MB\t"
        r"Max Memory Used: (\d+) MB\tInit Duration: ([0-9.]+) ms\t\n\Z",
        log,
    )
    assert report and int(report[2]) == max(1, math.ceil(float(report[1]))), log  # billed: rounded up, as Lambda
    assert 5 < int(report[3]) < 192 and float(report[4]) > 1, log  # a cold start: the worker's init is reported
    # Warm: the module stays imported in its worker, and no init is reported; the peak memory is the worker's.
    warm = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    assert json.loads(warm["Payload"].read())["calls"] == 2
    warm_log = base64.b64decode(warm["LogResult"]).decode()
    assert "Init Duration" not in warm_log and re.search(r"\tMax Memory Used: \d+ MB\t\n\Z", warm_log), warm_log
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName=name, Payload=b"not json")


def test_the_report_line_gives_the_workers_peak_memory_as_lambda_does(lam) -> None:
    """``Max Memory Used`` is the peak over the worker's calls so far (Lambda's environment), also for a call
    that timed out, whose worker is killed, and for one whose runtime exited (as last seen, each second)."""
    name = _name()
    code = (
        "import os, time\n"
        "def handler(event, context):\n"
        "    block = bytearray(event['mb'] * 1024 * 1024)\n"
        "    block[::4096] = b'x' * len(block[::4096])\n"  # touched: resident, not only reserved
        "    time.sleep(event['sleep'])\n"
        "    if event.get('exit'):\n"
        "        os._exit(3)\n"
        "    return len(block)\n"
    )
    deploy(lam, name, code, allow=None, MemorySize=256, Timeout=2)

    def peak(mb: int, sleep: float = 0, exit: bool = False) -> tuple[int, str | None]:
        event = json.dumps({"mb": mb, "sleep": sleep, "exit": exit})
        answer = lam.invoke(FunctionName=name, Payload=event, LogType="Tail")
        log = base64.b64decode(answer["LogResult"]).decode()
        used = re.search(r"\tMax Memory Used: (\d+) MB\t", log)
        assert used, log
        return int(used[1]), answer.get("FunctionError")

    small, _ = peak(1)
    big, _ = peak(100)
    assert small < 60 and big >= small + 95, (small, big)
    assert peak(1)[0] >= big  # the peak so far, not this call's
    timed_out, error = peak(150, sleep=5)
    assert error == "Unhandled" and timed_out >= small + 145, (small, timed_out)
    exited, error = peak(120, sleep=1.5, exit=True)  # a fresh worker: its own peak
    assert error == "Unhandled" and exited >= 120, (small, exited)


def test_a_handler_printing_hundreds_of_megabytes_does_not_fill_the_disk(lam) -> None:
    """Its output goes to a file only the last 4 MB of which an invocation's log shows: the rest is freed each
    second. Before, 300 MB written were 300 MB on disk (2.1 GB in a 4 s print loop, measured)."""
    name = _name()
    code = (
        "import os, time\n"
        "def handler(event, context):\n"
        "    chunk, on_disk = b'y' * (1 << 20), []\n"
        "    for _ in range(3):\n"
        "        for _ in range(100):\n"
        "            os.write(1, chunk)\n"
        "        time.sleep(1.5)\n"
        "        on_disk.append(os.fstat(1).st_blocks * 512 >> 20)\n"  # stdout is the worker's log file
        "    os.write(1, b'\\nEND-MARK\\n')\n"
        "    return on_disk\n"
    )
    deploy(lam, name, code, allow=None, Timeout=30)
    answer = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    on_disk = json.loads(answer["Payload"].read())
    assert max(on_disk) <= 12, on_disk  # MB: the last 4 MB, and what came since the last look
    assert "END-MARK" in base64.b64decode(answer["LogResult"]).decode()


def test_invoke_takes_what_lambda_takes_and_refuses_a_bad_client_context(lam) -> None:
    """A payload Python's json reads but orjson does not (a lone surrogate's escape) is invoked; a client context
    that is not base64 of a JSON object, or longer than the model's 3,583 bytes, is refused at the API, not by the
    function's runtime."""
    name = _name()
    code = "def handler(event, context):\n    return [event['a'] == '\\ud800', context.client_context.custom]\n"
    deploy(lam, name, code, allow=None)
    ctx = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    answer = lam.invoke(FunctionName=name, Payload=b'{"a": "\\ud800"}', ClientContext=ctx)
    body = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer and body == [True, {"k": "v"}], body
    for payload in (b'{"a": NaN}', b"Infinity", b'{"a": -Infinity}'):  # Python's json takes them; JSON has none
        with pytest.raises(lam.exceptions.InvalidRequestContentException):
            lam.invoke(FunctionName=name, Payload=payload)
    for bad in (base64.b64encode(b"not json").decode(), base64.b64encode(b"[1]").decode(), "A" * 3584):
        with pytest.raises(lam.exceptions.InvalidParameterValueException, match="X-Amz-Client-Context"):
            lam.invoke(FunctionName=name, Payload=b"{}", ClientContext=bad)


def test_an_invocation_answers_under_its_own_request_id(lam, server: Server) -> None:
    """The response's x-amzn-RequestId is the invocation's (the context's aws_request_id, the log's START line), and
    an Event invocation's 202 names the record it leaves."""
    name = _name()
    deploy(lam, name, COUNTER, handler="index.lambda_handler", allow=None)
    answer = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert json.loads(answer["Payload"].read())["request_id"] == request_id
    assert f"START RequestId: {request_id}" in base64.b64decode(answer["LogResult"]).decode()
    queued = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["ResponseMetadata"]["RequestId"]
    assert queued != request_id
    records = f"/pointcast/v1/functions/{name}/invocations"
    wait_for(lambda: queued in {c["RequestId"] for c in own(server, records)["Invocations"]}, 20, "the Event's record")


def test_an_invoke_waiting_for_a_worker_of_a_function_deleted_meanwhile_is_not_found(lam) -> None:
    """The function's 4 slots are taken by 2 s calls; a fifth call waits, the function is deleted: the fifth is a
    ResourceNotFoundException (not an empty 200, nor a call to AWS Lambda)."""
    name = _name()
    deploy(
        lam, name, "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return 1\n", allow=None
    )
    with ThreadPoolExecutor(5) as pool:
        busy = [pool.submit(lam.invoke, FunctionName=name, Payload=b'{"s": 2}') for _ in range(4)]
        time.sleep(1.0)  # the four are running
        late = pool.submit(lam.invoke, FunctionName=name, Payload=b'{"s": 0}')
        time.sleep(0.3)
        lam.delete_function(FunctionName=name)
        assert [json.loads(f.result(timeout=30)["Payload"].read()) for f in busy] == [1, 1, 1, 1]
        with pytest.raises(lam.exceptions.ResourceNotFoundException, match=f"function:{name}"):
            late.result(timeout=30)


def test_invoke_error_payload(lam) -> None:
    name = _name()
    deploy(lam, name, "def handler(event, context):\n    raise ValueError('bad input: ' + event['x'])\n", allow=None)
    answer = lam.invoke(FunctionName=name, Payload=json.dumps({"x": "zz"}), LogType="Tail")
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "bad input: zz"
    log = base64.b64decode(answer["LogResult"]).decode()
    # Lines joined by LF as Lambda's log sink writes them (awslambdaric's console fallback joins them by CR)
    assert "[ERROR] ValueError: bad input: zz\nTraceback (most recent call last):\n" in log and "\r" not in log, log


def test_logging_config_json_and_its_level_reach_the_runtime(lam) -> None:
    """LoggingConfig's LogFormat JSON and ApplicationLogLevel are what the function's logs follow (they were stored
    and had no effect): awslambdaric writes each record as a JSON object and drops those under the level."""
    name = _name()
    code = (
        "import logging\n"
        "def handler(event, context):\n"
        "    logging.getLogger().info('quiet')\n"
        "    logging.getLogger().warning('loud')\n"
        "    return 1\n"
    )
    deploy(lam, name, code, allow=None, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})

    def logged() -> str:
        answer = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        return base64.b64decode(answer["LogResult"]).decode()

    records = [json.loads(line) for line in logged().splitlines() if line.startswith("{")]
    assert [(r["level"], r["message"]) for r in records] == [("WARNING", "loud")], records
    assert records[0]["requestId"]
    lam.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "Text"})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    text = logged()
    assert "\tloud\n" in text and "[WARNING]" in text and '"message"' not in text, text


def test_platform_lines_of_a_log_start_lines_of_their_own(lam) -> None:
    """END, and a timeout's line, after output that did not end its line (Lambda's are log events of their own)."""
    name = _name()
    code = "import time\ndef handler(event, context):\n    print('x', end='', flush=True)\n    time.sleep(event['s'])\n"
    deploy(lam, name, code, allow=None, Timeout=1)
    done = base64.b64decode(lam.invoke(FunctionName=name, Payload=b'{"s": 0}', LogType="Tail")["LogResult"]).decode()
    assert "\nx\nEND RequestId: " in done, done
    late = base64.b64decode(lam.invoke(FunctionName=name, Payload=b'{"s": 5}', LogType="Tail")["LogResult"]).decode()
    assert re.search(r"\nx\n\S+ \S+ Task timed out after 1.00 seconds\nEND RequestId: ", late), late


def test_permissions(lam) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName=name)
    added = lam.add_permission(
        FunctionName=name,
        StatementId="sid0",
        Action="lambda:InvokeFunction",
        Principal=f"pinpoint.{REGION}.amazonaws.com",
        SourceArn=EVERY_APP,
    )
    statement = json.loads(added["Statement"])
    assert statement == {
        "Sid": "sid0",
        "Effect": "Allow",
        "Principal": {"Service": f"pinpoint.{REGION}.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
        "Condition": {"ArnLike": {"AWS:SourceArn": EVERY_APP}},
    }
    with pytest.raises(lam.exceptions.ResourceConflictException, match="sid0"):
        lam.add_permission(FunctionName=name, StatementId="sid0", Action="lambda:InvokeFunction", Principal="x.com")
    policy = json.loads(lam.get_policy(FunctionName=name)["Policy"])
    assert policy["Version"] == "2012-10-17" and policy["Statement"] == [statement]
    lam.remove_permission(FunctionName=name, StatementId="sid0")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.remove_permission(FunctionName=name, StatementId="sid0")
    # Lambda's 20 KB limit on the policy document
    arn = f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/" + "a" * 1000 + "/*"
    allow = {"Action": "lambda:InvokeFunction", "Principal": f"pinpoint.{REGION}.amazonaws.com", "SourceArn": arn}
    added = 0
    with pytest.raises(lam.exceptions.PolicyLengthExceededException, match="bigger than the limit"):
        for sid in range(40):  # ~1.2 KB each
            lam.add_permission(FunctionName=name, StatementId=f"s{sid}", **allow)
            added += 1
    assert 10 <= added < 20 and len(lam.get_policy(FunctionName=name)["Policy"]) <= 20 * 1024
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="not an IAM role ARN"):
        lam.update_function_configuration(FunctionName=name, Role="")


def test_permission_members_become_conditions_and_revisions_are_checked(lam) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    added = lam.add_permission(FunctionName=name, StatementId="org-only", Action="lambda:InvokeFunction",
                               Principal="*", PrincipalOrgID="o-abcdefghij")  # fmt: skip
    assert json.loads(added["Statement"])["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}
    added = lam.add_permission(FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl",
                               Principal="*", FunctionUrlAuthType="NONE", SourceAccount=ACCOUNT_ID)  # fmt: skip
    equals = {"AWS:SourceAccount": ACCOUNT_ID, "lambda:FunctionUrlAuthType": "NONE"}
    assert json.loads(added["Statement"])["Condition"] == {"StringEquals": equals}
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="StatementId"):
        lam.add_permission(FunctionName=name, StatementId="bad sid!", Action="lambda:InvokeFunction", Principal="*")
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.remove_permission(FunctionName=name, StatementId="url", RevisionId="not-the-revision")
    revision = lam.get_policy(FunctionName=name)["RevisionId"]
    lam.remove_permission(FunctionName=name, StatementId="url", RevisionId=revision)
    assert [s["Sid"] for s in json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]] == ["org-only"]


def test_deleting_latest_alone_is_refused_and_keeps_the_function(lam) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    for reference in ({"FunctionName": name, "Qualifier": "$LATEST"}, {"FunctionName": f"{name}:$LATEST"}):
        with pytest.raises(lam.exceptions.InvalidParameterValueException, match="cannot be deleted"):
            lam.delete_function(**reference)
    assert lam.get_function_configuration(FunctionName=name)["FunctionName"] == name
    lam.delete_function(FunctionName=name)


def test_configuration_members_are_applied_or_refused_not_dropped(lam) -> None:
    name = _name()
    created = deploy(lam, name, allow=None, LoggingConfig={"LogFormat": "JSON"}, EphemeralStorage={"Size": 1024},
                     VpcConfig={"SubnetIds": [], "SecurityGroupIds": []})  # fmt: skip
    assert created["LoggingConfig"]["LogFormat"] == "JSON" and created["EphemeralStorage"] == {"Size": 1024}
    updated = lam.update_function_configuration(FunctionName=name, EphemeralStorage={"Size": 2048},
                                                LoggingConfig={"LogFormat": "Text"}, KMSKeyArn=KEY,
                                                VpcConfig={"SubnetIds": [], "SecurityGroupIds": []},
                                                SnapStart={"ApplyOn": "None"})  # fmt: skip
    assert updated["EphemeralStorage"] == {"Size": 2048} and updated["LoggingConfig"]["LogFormat"] == "Text"
    assert updated["KMSKeyArn"] == KEY
    arm = lam.update_function_code(
        FunctionName=name, ZipFile=zip_code({"index.py": "x = 1\n"}), Architectures=["arm64"]
    )
    assert arm["Architectures"] == ["arm64"]
    for change, words in (
        ({"VpcConfig": {"SubnetIds": ["subnet-1"]}}, "VpcConfig is not supported"),
        ({"SnapStart": {"ApplyOn": "PublishedVersions"}}, "SnapStart is not supported"),
        ({"DeadLetterConfig": {"TargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:dlq"}}, "DeadLetterConfig"),
        ({"EphemeralStorage": {"Size": 20000}}, "between 512 and 10240"),
    ):
        with pytest.raises(lam.exceptions.InvalidParameterValueException, match=words):
            lam.update_function_configuration(FunctionName=name, **change)


def test_names_with_a_trailing_newline_and_policies_for_latest_are_refused_as_lambda_does(lam, server) -> None:
    """A pattern's ``$`` takes a final newline: ``nl\\n`` was created as ``nl``, and an Environment key ``FOO\\n`` was
    stored but never reached the handler. AddPermission on ``$LATEST`` is refused by Lambda in its own words."""
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_function(FunctionName="nl\n", Runtime="python3.12", Role=ROLE, Handler="index.handler",
                            Code={"ZipFile": zip_code({"index.py": "x = 1\n"})})  # fmt: skip
    name = _name()
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="FOO"):
        deploy(lam, name, allow=None, Environment={"Variables": {"FOO\n": "1"}})
    deploy(lam, name, allow=None)
    for reference in ({"FunctionName": name, "Qualifier": "$LATEST"}, {"FunctionName": f"{name}:$LATEST"}):
        with pytest.raises(lam.exceptions.InvalidParameterValueException, match=r"adding policies for \$LATEST"):
            lam.add_permission(**reference, StatementId="s", Action="lambda:InvokeFunction",
                               Principal="pinpoint.amazonaws.com")  # fmt: skip
    response = httpx.get(f"{server.url}/2015-03-31/functions/nl%0A/configuration", timeout=10)
    assert response.status_code in (403, 404) and "x-amzn-errortype" in response.headers, response.text
    lam.delete_function(FunctionName=name)


def test_a_zip_is_refused_by_its_declared_size_before_anything_is_inflated(lam) -> None:
    """A zip whose directory declares 4 GB: refused for its size at once. Before, every member was inflated to test
    it first (seconds for a 2 MB zip of 2 GiB of zeros, inside the write transaction all other writes wait for), and
    this one, whose data is short of what it declares, failed as unreadable instead."""
    data = bytearray(zip_code({"index.py": "def handler(e, c): return 1\n"}))
    entry = data.index(b"PK\x01\x02")  # the central directory's entry: its uncompressed size is at offset 24
    data[entry + 24 : entry + 28] = struct.pack("<I", 0xFFFF0000)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Unzipped size must be smaller"):
        lam.create_function(FunctionName=_name(), Runtime="python3.12", Role=ROLE, Handler="index.handler",
                            Code={"ZipFile": bytes(data)})  # fmt: skip


def test_a_function_may_set_its_own_tz(lam) -> None:
    name = _name()
    source = "import os, time\ndef handler(e, c):\n    return [os.environ['TZ'], time.strftime('%z')]\n"
    deploy(lam, name, source, allow=None, Environment={"Variables": {"TZ": "Asia/Tokyo"}})
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == ["Asia/Tokyo", "+0900"]
    other = _name()
    deploy(lam, other, source, allow=None)
    assert json.loads(lam.invoke(FunctionName=other)["Payload"].read()) == [":UTC", "+0000"]


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"Runtime": "java21"}, "InvalidParameterValueException", "java21 is not supported"),
        ({"Runtime": "python3.8"}, "InvalidParameterValueException", "python3.8 is no longer supported"),
        ({"Runtime": "nodejs12.x"}, "InvalidParameterValueException", "nodejs12.x is no longer supported"),
        ({"Runtime": "python3.12", "Handler": "nodot"}, "InvalidParameterValueException", "FILE.FUNCTION"),
        ({"Timeout": 901}, "InvalidParameterValueException", "between 1 and 900"),
        ({"Code": {"ZipFile": b"not a zip"}}, "InvalidParameterValueException", "Could not unzip"),
        ({"Code": {"S3Bucket": "bucket", "S3Key": "key.zip"}}, "InvalidParameterValueException", "ZipFile is required"),
        ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, "InvalidParameterValueException", "AWS_REGION"),
        ({"FunctionName": "bad name!"}, "InvalidParameterValueException", "bad name!"),
        ({"Handler": "index." + "h" * 200}, "InvalidParameterValueException", "Handler string should have at most 128"),
        ({"Description": "d" * 300}, "InvalidParameterValueException", "Description string should have at most 256"),
        ({"MemorySize": 40000}, "InvalidParameterValueException", "MemorySize input should be less than or equal"),
        ({"Role": "not-an-arn"}, "InvalidParameterValueException", "Role 'not-an-arn' is not an IAM role ARN"),
        ({"Role": ""}, "InvalidParameterValueException", "Role '' is not an IAM role ARN"),
    ],
)
def test_create_refusals(lam, change: dict, error: str, words: str) -> None:
    request = {
        "FunctionName": _name(),
        "Runtime": "python3.12",
        "Role": ROLE,
        "Handler": "index.handler",
        "Code": {"ZipFile": zip_code({"index.py": "def handler(e, c): return 1\n"})},
        **change,
    }
    with pytest.raises(ClientError) as caught:
        lam.create_function(**request)
    assert caught.value.response["Error"]["Code"] == error and words in caught.value.response["Error"]["Message"]


def test_duplicate_and_not_found(lam) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    with pytest.raises(lam.exceptions.ResourceConflictException, match="already exist"):
        deploy(lam, name, allow=None)
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="nope"):
        lam.invoke(FunctionName="nope")
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="only \\$LATEST"):
        lam.get_function(FunctionName=name, Qualifier="3")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=f"arn:aws:lambda:{REGION}:999999999999:function:{name}")


def test_aws_cli_seed_commands(server: Server, tmp_path: Path) -> None:
    """The issue's commands and seed 000's add-permission, with only --endpoint-url added."""
    name = _name()
    archive = tmp_path / "counter.zip"
    archive.write_bytes(zip_code({"index.py": COUNTER}))
    created = server.cli(
        "lambda", "create-function", "--function-name", name, "--runtime", "python3.12",
        "--handler", "index.lambda_handler", "--zip-file", f"fileb://{archive}",
        "--role", f"arn:aws:iam::{ACCOUNT_ID}:role/x",
    )  # fmt: skip
    assert created["FunctionName"] == name
    added = server.cli(
        "lambda", "add-permission", "--function-name", name, "--statement-id", "sid0",
        "--action", "lambda:InvokeFunction", "--principal", f"pinpoint.{REGION}.amazonaws.com",
        "--source-arn", f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/*",
    )  # fmt: skip
    assert json.loads(added["Statement"])["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(":apps/*")
    out = tmp_path / "out.json"
    invoked = server.cli(
        "lambda", "invoke", "--function-name", name,
        "--payload", '{"hello": "world"}', str(out),
    )  # fmt: skip
    assert invoked["StatusCode"] == 200 and json.loads(out.read_text())["event"] == {"hello": "world"}
    listed = server.cli("lambda", "list-functions")
    assert name in [f["FunctionName"] for f in listed["Functions"]]
    server.cli("lambda", "delete-function", "--function-name", name)
    missing = server.cli("lambda", "get-function", "--function-name", name, check=False)
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


def test_nodejs_needs_node(tmp_path: Path) -> None:
    """A server whose PATH has no ``node`` refuses Node.js functions at create time, saying why."""
    from tests.conftest import running_server
    from tests.support.server import BIN

    with running_server("sqlite", tmp_path / "no-node", None, PATH=str(BIN)) as srv:
        lam = srv.lambda_()
        with pytest.raises(lam.exceptions.InvalidParameterValueException, match=r"needs Node\.js"):
            deploy(lam, _name(), "exports.handler = async () => 1;", runtime="nodejs20.x", allow=None)
        deploy(lam, _name(), allow=None)  # Python functions are fine


HANGS_WITH_A_CHILD = """
import json, subprocess, sys, time
def handler(event, context):
    child = subprocess.Popen(["sleep", "120"])
    with open(event["pids"], "w") as out:
        json.dump({"worker": __import__("os").getpid(), "child": child.pid}, out)
    time.sleep(60)
"""


@contextlib.contextmanager
def hanging_worker(srv: Server, tmp_path: Path) -> Iterator[dict[str, int]]:
    """A worker of ``srv`` running HANGS_WITH_A_CHILD: the pids of the worker and of its handler's child, both
    killed on the way out whatever the test did."""
    pids_file = tmp_path / "pids.json"
    lam = srv.lambda_()
    deploy(lam, "hangs", HANGS_WITH_A_CHILD, allow=None, Timeout=90)
    lam.invoke(FunctionName="hangs", InvocationType="Event", Payload=json.dumps({"pids": str(pids_file)}))
    pids = wait_for(lambda: pids_file.exists() and json.loads(pids_file.read_text() or "null"), 30, "the pids")
    try:
        yield pids
    finally:
        for pid in pids.values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc").is_dir() or not shutil.which("setpriv"), reason="needs Linux and setpriv")
def test_a_killed_server_leaves_no_worker_running(tmp_path: Path) -> None:
    """kill -9 of the server: its busy worker dies with it (no handler runs on past its Timeout, beside the one a
    restarted server starts for the same batch), and what the handler started is killed when the server starts."""
    with running_server("sqlite", tmp_path / "srv", None) as srv, hanging_worker(srv, tmp_path) as pids:
        srv.stop(signal.SIGKILL)
        wait_for(lambda: not alive(pids["worker"]), 10, "the worker to die with the server")
        assert alive(pids["child"])  # the handler's own child outlived its worker...
        assert list((srv.data_dir / "workers").glob("worker-*.log"))  # the dead worker's output
        srv.start()
        wait_for(lambda: not alive(pids["child"]), 10, "the child to be killed")  # ... until the next start
        assert "left running by a worker of an earlier server" in srv.log()
        assert not list((srv.data_dir / "workers").glob("worker-*.log"))  # went with it (they stayed for ever)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux")
def test_a_starting_server_leaves_a_running_older_servers_workers_alone(tmp_path: Path) -> None:
    """A server from before pool.lock holds none, so a new server on its data directory took its live workers for a
    dead server's leftovers and killed them. Now only processes with no server among their ancestors are leftovers:
    here a stand-in old server's worker lives on, and an orphan left by a dead one is killed."""
    import subprocess
    import sys

    data_dir = tmp_path / "srv"
    workers = data_dir / "workers"
    workers.mkdir(parents=True)
    marker = str(workers / "worker-old")

    def children(pid: int) -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(child) for child in found.split()]

    # An old server (its argv: ... pointcast serve) running a worker; and an orphan, whose parent is gone.
    start_worker = "import os, subprocess, sys; env = dict(os.environ, POINTCAST_WORKER=sys.argv[1]); "
    start_worker += "subprocess.Popen(['sleep', '60'], env=env).wait()"
    old_server = subprocess.Popen([sys.executable, "-c", start_worker, marker, "pointcast", "serve"])
    leave = subprocess.run(
        ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"],
        env={**os.environ, "POINTCAST_WORKER": marker},
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = int(leave.stdout)
    try:
        [worker] = wait_for(lambda: children(old_server.pid), 10, "the old server's worker")
        with running_server("sqlite", data_dir, None) as srv:
            wait_for(lambda: not alive(orphan), 10, "the orphan to be killed")
            assert alive(worker) and old_server.poll() is None, srv.log()
    finally:
        for pid in [orphan, *children(old_server.pid)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        old_server.kill()
        old_server.wait()


def test_lambda_errors_are_lambdas_own(lam, server: Server) -> None:
    """What a Lambda client is refused with is a type its model has, with Lambda's ``Type`` member: an operation
    pointcast does not serve, a body over the limit, a query or header member outside the model's range or enum,
    a NUL in a query; pointcast's own routes answer such input with a 400 in the AWS envelope, never a 500."""
    name = _name()
    deploy(lam, name, "def handler(event, context):\n    return 1\n", allow=None)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="PublishVersion is not supported") as err:
        lam.publish_version(FunctionName=name)
    assert err.value.response["Type"] == "User"  # the model's member, where botocore puts it
    listed = signed_request("GET", f"{server.url}/2015-03-31/functions/?MaxItems=0", service="lambda")
    assert listed.status_code == 400 and listed.headers["x-amzn-ErrorType"] == "InvalidParameterValueException"
    assert "MaxItems" in listed.json()["Message"]  # (boto3 checks the minimum itself; a raw request is not)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="X-Amz-Log-Type"):
        lam.invoke(FunctionName=name, Payload=b"{}", LogType="Bogus")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Marker contains the NUL"):
        lam.list_functions(Marker="a\x00b")
    body = b" " * (70 * 1024 * 1024 + 1)
    huge = signed_request("POST", f"{server.url}/2015-03-31/functions", body, service="lambda")
    assert (huge.status_code, huge.headers["x-amzn-ErrorType"]) == (413, "RequestTooLargeException")
    assert huge.json()["Type"] == "User"
    for path in ("/pointcast/v1/functions/a%00b/invocations", "/pointcast/v1/functions/a%00b/code?token=x"):
        answer = signed_request("GET", server.url + path, service="lambda")
        assert answer.status_code == 400 and "NUL" in answer.json()["Message"], answer.text


def test_a_policy_change_keeps_the_warm_workers_and_a_code_change_does_not(lam) -> None:
    """AddPermission and RemovePermission change RevisionId, as in Lambda, but not what a worker runs: the next call
    is warm; a configuration change starts a new worker."""
    name = _name()
    deploy(lam, name, "import os\ndef handler(e, c):\n    return os.getpid()\n", allow=None)

    def pid() -> int:
        return int(json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()))

    first = pid()
    allow = {"Action": "lambda:InvokeFunction", "Principal": f"pinpoint.{REGION}.amazonaws.com", "SourceArn": EVERY_APP}
    lam.add_permission(FunctionName=name, StatementId="s1", **allow)
    assert pid() == first
    lam.remove_permission(FunctionName=name, StatementId="s1")
    assert pid() == first
    lam.update_function_configuration(FunctionName=name, Timeout=5)
    assert pid() != first


def test_an_invoke_past_the_concurrency_is_throttled_after_a_short_wait(tmp_path: Path) -> None:
    """An Invoke waits POINTCAST_INVOKE_QUEUE_SECONDS for a worker, then gets Lambda's 429 TooManyRequestsException,
    having run nothing: waiting longer than a client's read timeout would make it send the call again, and run it
    twice. (Campaigns' calls wait their turn.)"""
    with running_server("sqlite", tmp_path / "srv", None, POINTCAST_INVOKE_QUEUE_SECONDS="1") as srv:
        lam = srv.lambda_()
        name = _name()
        deploy(
            lam,
            name,
            "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return 1\n",
            Timeout=10,
        )
        with ThreadPoolExecutor(4) as pool:
            busy = [pool.submit(lam.invoke, FunctionName=name, Payload=b'{"s": 4}') for _ in range(4)]
            time.sleep(1.0)  # the function's 4 slots are taken
            started = time.monotonic()
            with pytest.raises(lam.exceptions.TooManyRequestsException, match="Rate Exceeded") as throttled:
                lam.invoke(FunctionName=name, Payload=b'{"s": 0}')
            assert 0.9 <= time.monotonic() - started < 3
            assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            assert [json.loads(f.result(timeout=30)["Payload"].read()) for f in busy] == [1, 1, 1, 1]
        records = own(srv, f"/pointcast/v1/functions/{name}/invocations")["Invocations"]
        assert sorted(r["Outcome"] for r in records) == ["Success"] * 4 + ["Throttled"]


def test_event_invocations_waiting_are_bounded(tmp_path: Path) -> None:
    """Event invocations wait for a worker in the server's memory; past POINTCAST_FUNCTION_EVENT_QUEUE of them an
    Event Invoke is answered 429 TooManyRequestsException, and once they have run, it is taken again."""
    with running_server("sqlite", tmp_path / "srv", None, POINTCAST_FUNCTION_EVENT_QUEUE="3") as srv:
        lam = srv.lambda_()
        name = _name()
        deploy(lam, name, "import time\ndef handler(event, context):\n    time.sleep(1.5)\n", Timeout=10)
        for _ in range(3):
            assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
        with pytest.raises(lam.exceptions.TooManyRequestsException, match="too many Event invocations"):
            lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
        wait_for(
            lambda: len(own(srv, f"/pointcast/v1/functions/{name}/invocations")["Invocations"]) == 3, 30, "the three"
        )
        assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux")
def test_a_second_server_on_the_data_directory_leaves_the_first_ones_workers_alone(tmp_path: Path) -> None:
    """What a killed server's workers left is killed when a server starts again on its data directory, but only
    when no other server runs there: a second server (a mistake, or a second node of one store) must not kill the
    running one's workers."""
    with running_server("sqlite", tmp_path / "srv", None) as first, hanging_worker(first, tmp_path) as pids:
        second = Server(first.data_dir, dict(first.env)).start()
        second.stop()
        assert alive(pids["worker"]) and alive(pids["child"])
        assert "left running by a worker of an earlier server" not in second.log()

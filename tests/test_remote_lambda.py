"""Functions in AWS Lambda, against a stand-in for AWS on loopback that answers as AWS does when it throttles, is out
of reach, times a function out or breaks an answer off: real boto3 (functions.remote.RemoteLambda) and the engine's
attempts (engine.hooks.call)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest

from pointcast.channels.webhook.breaker import Breakers
from pointcast.channels.webhook.deliver import RetryPolicy
from pointcast.engine import hooks
from pointcast.engine.execute import ExecuteDeps
from pointcast.functions.names import parse_ref
from pointcast.functions.remote import RemoteLambda, policy_refusal
from tests.support.loopback import LoopbackHTTP

REGION = "us-east-1"
SOURCE = f"arn:aws:mobiletargeting:{REGION}:123456789012:apps/a/campaigns/c"


class FakeLambda(LoopbackHTTP):
    """Invoke and GetPolicy as AWS answers them; each function name picks a behaviour. ``throttles[name]`` 429s
    are answered before a function succeeds."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.throttles: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-amzn-RequestId", f"req-{uuid.uuid4()}")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = unquote(self.path.split("?")[0])
                fake.requests.append(f"GET {path}")
                fn = path.split("/")[3].split(":function:")[-1]
                if fn == "denied":
                    message = "User: arn:aws:iam::1:user/p is not authorized to perform: lambda:GetPolicy"
                    self.answer(403, {"Message": message}, {"x-amzn-ErrorType": "AccessDeniedException"})
                elif fn == "badkey":
                    message = "The security token included in the request is invalid."
                    self.answer(403, {"message": message}, {"x-amzn-ErrorType": "UnrecognizedClientException"})
                else:
                    self.answer(
                        404, {"Message": f"Function not found: {fn}"}, {"x-amzn-ErrorType": "ResourceNotFoundException"}
                    )

            def do_POST(self) -> None:
                path = unquote(self.path.split("?")[0])
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append(f"POST {path}")
                fn = path.split("/")[3].split(":function:")[-1]
                if fake.throttles.get(fn, 0) > 0:
                    fake.throttles[fn] -= 1
                    body = {"message": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}
                    self.answer(429, body, {"x-amzn-ErrorType": "TooManyRequestsException", "Retry-After": "0"})
                elif fn == "slowtimeout":
                    body = {"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: r Error: Task timed out"}
                    self.answer(200, body, {"X-Amz-Function-Error": "Unhandled"})
                elif fn == "broken":
                    self.answer(500, {"message": "internal"}, {"x-amzn-ErrorType": "ServiceException"})
                elif fn == "stallbody":  # the head, then part of the body, then nothing
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000")
                    self.send_header("x-amzn-RequestId", "req-stalled")
                    self.end_headers()
                    self.wfile.write(b'{"a": "')
                    self.wfile.flush()
                    time.sleep(3)
                    self.close_connection = True
                else:
                    self.answer(200, {"ok": True})

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)


@pytest.fixture
def fake() -> Iterator[FakeLambda]:
    aws = FakeLambda()
    yield aws
    aws.close()


def remote(url: str, timeout: float = 5.0) -> RemoteLambda:
    settings = SimpleNamespace(
        remote_lambda_endpoint_url=url,
        remote_lambda_access_key_id="AKIDPOINTCASTTEST",
        remote_lambda_secret_access_key="pointcast-test-secret",
        remote_lambda_timeout=timeout,
        delivery_concurrency=4,
    )
    return RemoteLambda(settings)  # type: ignore[arg-type]


class Functions:
    """What the engine calls (FunctionHost.invoke), reduced to RemoteLambda.invoke; counts the calls."""

    def __init__(self, aws: RemoteLambda) -> None:
        self.aws = aws
        self.calls = 0

    async def invoke(self, target: str, event: bytes, **kw: Any) -> Any:
        self.calls += 1
        ref = parse_ref(target)
        assert ref is not None
        return await self.aws.invoke(ref, event, REGION, kw.get("timeout"))


def engine(functions: Functions, outage_limit: float) -> ExecuteDeps:
    async def unused(work: Any) -> Any:
        raise AssertionError("no store here")

    policy = RetryPolicy(3, 0.02, 0.1, 5.0)
    breakers = Breakers(outage_limit=outage_limit)
    return ExecuteDeps(unused, unused, None, policy, None, functions=functions, breakers=breakers)  # type: ignore[arg-type]


def call(deps: ExecuteDeps, target: str) -> hooks.Called:
    return asyncio.run(hooks.call(deps, target, b"{}", kind="FILTER", source_arn=SOURCE, batch_id="b1"))


def test_a_throttled_function_waits_without_spending_attempts(fake: FakeLambda) -> None:
    """Five 429s in a row, then an answer: the batch waits them out and succeeds (3 attempts would have been spent
    by the third 429); the throttled calls are marked Throttled and keep AWS's request id."""
    fake.throttles["busy"] = 5
    functions = Functions(remote(fake.url))
    called = call(engine(functions, outage_limit=30.0), "busy")
    assert called.ok, called.reason
    assert functions.calls == 6 and len(called.attempts) == 1

    fake.throttles["busy2"] = 1
    answer = asyncio.run(remote(fake.url).invoke(parse_ref("busy2"), b"{}", REGION, None))  # type: ignore[arg-type]
    assert answer.throttled and answer.unavailable and not answer.ok
    assert answer.request_id.startswith("req-")


def test_throttling_past_the_outage_limit_fails_with_a_clear_reason(fake: FakeLambda) -> None:
    fake.throttles["busy"] = 10_000
    functions = Functions(remote(fake.url))
    started = time.monotonic()
    called = call(engine(functions, outage_limit=0.5), "busy")
    assert not called.ok and time.monotonic() - started >= 0.5
    assert "throttled" in str(called.reason) and "POINTCAST_DELIVERY_OUTAGE_LIMIT" in str(called.reason)
    assert functions.calls > 3


def test_an_unreachable_aws_waits_rather_than_failing_within_seconds() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    functions = Functions(remote(f"http://127.0.0.1:{port}"))
    called = call(engine(functions, outage_limit=0.6), "anything")
    assert not called.ok and functions.calls > 3, (functions.calls, called.reason)
    assert "could not be reached" in str(called.reason) and "POINTCAST_DELIVERY_OUTAGE_LIMIT" in str(called.reason)


def test_function_errors_still_spend_attempts(fake: FakeLambda) -> None:
    functions = Functions(remote(fake.url))
    called = call(engine(functions, outage_limit=30.0), "broken")
    assert not called.ok and functions.calls == 3 and "after 3 attempt(s)" in str(called.reason)


def test_an_answer_broken_off_is_a_failed_attempt_timed_out(fake: FakeLambda) -> None:
    answer = asyncio.run(remote(fake.url, timeout=1.0).invoke(parse_ref("stallbody"), b"{}", REGION, 1.0))  # type: ignore[arg-type]
    assert not answer.ok and answer.timed_out and not answer.unavailable
    assert "InternalError" not in answer.error_message and answer.request_id.startswith("req-")


def test_sandbox_timedout_is_timed_out(fake: FakeLambda) -> None:
    answer = asyncio.run(remote(fake.url).invoke(parse_ref("slowtimeout"), b"{}", REGION, None))  # type: ignore[arg-type]
    assert answer.function_error == "Unhandled" and answer.timed_out and answer.request_id.startswith("req-")


def test_partitions_are_kept(fake: FakeLambda) -> None:
    for partition, region in (("aws-us-gov", "us-gov-west-1"), ("aws-cn", "cn-north-1")):
        arn = f"arn:{partition}:lambda:{region}:123456789012:function:fn"
        ref = parse_ref(arn)
        assert ref is not None and ref.arn(REGION, "000000000000") == arn
        assert not ref.is_local(region, "123456789012")
        asyncio.run(remote(fake.url).invoke(ref, b"{}", REGION, None))
        assert fake.requests[-1] == f"POST /2015-03-31/functions/{arn}/invocations"


def policy_error(fake: FakeLambda, fn: str, url: str | None = None, keys: bool = True) -> str:
    aws = remote(url or fake.url)
    if not keys:
        aws.access_key = aws.secret_key = None
    ref = parse_ref(fn)
    assert ref is not None
    try:
        asyncio.run(aws.policy_statements(ref, REGION))
    except Exception as exc:
        return policy_refusal(exc, "no function here")
    raise AssertionError("GetPolicy did not fail")


def test_policy_refusals_say_what_to_do(fake: FakeLambda, monkeypatch: pytest.MonkeyPatch) -> None:
    denied = policy_error(fake, "denied")
    assert "lambda:GetPolicy and lambda:InvokeFunction" in denied and "deleted" not in denied
    bad = policy_error(fake, "badkey")
    assert "refused pointcast's credentials" in bad and "POINTCAST_REMOTE_LAMBDA_ACCESS_KEY_ID" in bad
    assert "deleted, or not created yet" in policy_error(fake, "gone")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    none = policy_error(fake, "denied", keys=False)
    assert "no AWS credentials" in none and "POINTCAST_REMOTE_LAMBDA_SECRET_ACCESS_KEY" in none


def test_the_outage_limit_is_the_functions_not_each_batchs(fake: FakeLambda) -> None:
    """Batches that follow one another (as a campaign's do through its delivery slots) to a function throttled for
    good: the first waits out the limit, the next fail at once. Before, each waited the whole limit in turn (20,000
    batches x 300 s through 32 slots: about 52 hours), calling AWS all the while."""
    fake.throttles["gone"] = 1_000_000
    functions = Functions(remote(fake.url))
    deps = engine(functions, outage_limit=0.5)
    started = time.monotonic()
    results = [call(deps, "gone") for _ in range(10)]
    took = time.monotonic() - started
    assert all(not r.ok for r in results) and took < 2.0, took  # 10 x 0.5 s before
    assert "past POINTCAST_DELIVERY_OUTAGE_LIMIT" in str(results[-1].reason)
    # A throttle answered with "Retry-After: 0" is waited for by the backoff, not called again at once.
    assert functions.calls < 100, functions.calls


def test_the_backoff_of_a_long_wait_does_not_overflow() -> None:
    """A function throttled for hours is waited for more than 1,024 times; 2 ** 1025 is not a float."""
    policy = RetryPolicy(3, 0.5, 30.0, 5.0)
    assert 0 <= policy.delay(5000, None) <= 30.0
    assert policy.delay(3, float("nan")) <= 30.0

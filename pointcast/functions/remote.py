"""Functions that live in AWS Lambda: invoked with boto3, in the region their ARN names.

The endpoint and credentials are configurable (``POINTCAST_REMOTE_LAMBDA_*``); without them boto3's own chain
(environment, profile, instance role) is used. botocore is synchronous, so each call runs on a worker thread, of a
pool of its own: a call waits there for as long as the function runs, and on Python's default pool (``os.cpu_count()
+ 4`` threads, shared with the rest of the server) only that many could be under way, the others' time running out
while they waited for a thread.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from pointcast.functions.names import FunctionRef

if TYPE_CHECKING:
    from pointcast.functions.host import Invocation
    from pointcast.settings import Settings

CONNECT_TIMEOUT = 5.0
MIN_CALLS = 32  # calls under way at once, at least (else as many as batches are delivered at once)


class RemoteLambda:
    """A small facade over ``boto3.client("lambda")`` per region."""

    def __init__(self, settings: Settings) -> None:
        self.endpoint_url = settings.remote_lambda_endpoint_url
        self.access_key = settings.remote_lambda_access_key_id
        self.secret_key = settings.remote_lambda_secret_access_key
        self.default_timeout = settings.remote_lambda_timeout
        self.calls = max(MIN_CALLS, settings.delivery_concurrency)
        self._clients: dict[tuple[str, float], Any] = {}
        self._lock = threading.Lock()
        self._threads = concurrent.futures.ThreadPoolExecutor(self.calls, thread_name_prefix="pointcast-lambda")

    async def _run(self, call: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def close(self) -> None:
        self._threads.shutdown(wait=False)

    def _client(self, region: str, read_timeout: float) -> Any:
        key = (region, read_timeout)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                config = Config(
                    # One try per call: the engine retries on its own terms (3 attempts in all, the contract's).
                    # botocore's max_attempts counts retries, so it would make two tries of every failing call.
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=read_timeout,
                    max_pool_connections=self.calls,
                )
                client = boto3.session.Session().client(
                    "lambda",
                    region_name=region,
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=self.access_key,
                    aws_secret_access_key=self.secret_key,
                    config=config,
                )
                self._clients[key] = client
            return client

    @staticmethod
    def _target(ref: FunctionRef, region: str) -> dict[str, str]:
        """FunctionName and Qualifier as AWS should resolve them: a reference that names its account is sent as a
        full ARN (its region, else ours); a bare name as it is, so that AWS resolves it in the account of the
        credentials (pointcast's own account id is not that account). The qualifier, if any, is sent apart: an
        alias or version has a resource policy of its own."""
        name = ref.arn(region, ref.account) if ref.account else ref.name  # the ARN's partition kept
        return {"FunctionName": name, **({"Qualifier": ref.qualifier} if ref.qualifier else {})}

    async def policy_statements(self, ref: FunctionRef, region: str) -> list[dict[str, Any]]:
        """The resource policy statements of the function, or of the alias or version it names ([] when it has
        none). Raises what boto3 raised otherwise (``is_transient`` tells a throttle or an outage apart)."""
        client = self._client(ref.region or region, self.default_timeout)

        def call() -> list[dict[str, Any]]:
            try:
                found = client.get_policy(**self._target(ref, region))
            except client.exceptions.ResourceNotFoundException as exc:
                if "Function not found" in str(exc):
                    raise
                return []
            return list(orjson.loads(found["Policy"]).get("Statement") or [])

        return list(await self._run(call))

    async def invoke(self, ref: FunctionRef, event: bytes, region: str, timeout: float | None) -> Invocation:
        from pointcast.functions.host import Invocation

        client = self._client(ref.region or region, timeout or self.default_timeout)
        started = time.monotonic()

        def call() -> Invocation:
            request_id = ""
            try:
                answer = client.invoke(**self._target(ref, region), Payload=event, LogType="Tail")
                request_id = answer.get("ResponseMetadata", {}).get("RequestId", "")
                payload = answer["Payload"].read()  # a read timeout or a broken stream here is a failed try too
            except Exception as exc:  # throttling, the network, not found, AWS's errors: all a failed try
                return failed_call(exc, request_id, (time.monotonic() - started) * 1000)
            logs = answer.get("LogResult")
            error = answer.get("FunctionError")
            return Invocation(
                request_id,
                payload,
                error,
                base64.b64decode(logs).decode("utf-8", "replace") if logs else "",
                (time.monotonic() - started) * 1000,
                timed_out=error is not None and _sandbox_timed_out(payload),
            )

        invocation: Invocation = await self._run(call)
        return invocation


def _sandbox_timed_out(payload: bytes) -> bool:
    """Whether AWS's error document says the function ran out of time (``Sandbox.Timedout``, or the older
    ``Task timed out after ...`` message)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(doc, dict):
        return False
    return doc.get("errorType") == "Sandbox.Timedout" or str(doc.get("errorMessage", "")).startswith("Task timed out")


def is_throttle(exc: BaseException) -> bool:
    """Whether AWS Lambda throttled the call (429, TooManyRequestsException, a Throttling code): nothing ran."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return status == 429 or "Throttl" in code or code == "TooManyRequestsException"


def is_unreachable(exc: BaseException) -> bool:
    """Whether AWS Lambda could not be reached at all (no connection made: refused, DNS, a connect timeout, the
    proxy): the call never got to the function. A read timeout or a connection closed mid-answer is not this."""
    return isinstance(exc, ConnectionError)


def retry_after(exc: BaseException) -> float | None:
    """AWS's Retry-After (seconds), when its error answer gave a positive one: a throttle answered "0" (or "nan")
    would otherwise be called again at once, as fast as the round trip allows, until the outage limit."""
    if not isinstance(exc, ClientError):
        return None
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
    try:
        value = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def failed_call(exc: BaseException, request_id: str, took_ms: float) -> Invocation:
    """An Invoke that failed short of the function's answer, as an Invocation: AWS's request id kept, a timeout as
    TimedOut, a throttle as Throttled; a throttle or an unreachable AWS is ``unavailable`` (the engine waits for it
    rather than spending an attempt)."""
    from pointcast.functions.host import Invocation

    if isinstance(exc, ClientError):
        request_id = exc.response.get("ResponseMetadata", {}).get("RequestId") or request_id
    throttled = is_throttle(exc)
    unreachable = is_unreachable(exc)
    if throttled:
        error_type, message = "pointcast.Throttled", f"AWS Lambda throttled the call: {exc}"
    elif unreachable:
        error_type, message = "pointcast.Unreachable", f"AWS Lambda could not be reached: {exc}"
    else:
        error_type, message = type(exc).__name__, str(exc)
    payload = orjson.dumps({"errorType": error_type, "errorMessage": message})
    timed_out = "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower()
    return Invocation(
        request_id,
        payload,
        "Unhandled",
        "",
        took_ms,
        timed_out=timed_out and not unreachable,
        throttled=throttled,
        unavailable=throttled or unreachable,
        retry_after=retry_after(exc),
    )


CREDENTIALS = (
    "POINTCAST_REMOTE_LAMBDA_ACCESS_KEY_ID and POINTCAST_REMOTE_LAMBDA_SECRET_ACCESS_KEY (else boto3's own chain: "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an instance role)"
)
_BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
    "IncompleteSignature",
    "MissingAuthenticationToken",
}
PERMISSIONS = "lambda:GetPolicy and lambda:InvokeFunction"


def policy_refusal(exc: BaseException, missing: str) -> str:
    """Why a function's policy in AWS could not be read, for a reason that will not pass by itself, said so that
    the reader knows what to do: ``missing`` says that pointcast does not host the function."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return f"{missing}, and pointcast has no AWS credentials to read its policy in AWS Lambda: set {CREDENTIALS}"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _BAD_CREDENTIALS or status == 401:
            return f"{missing}, and AWS Lambda refused pointcast's credentials ({exc}): check {CREDENTIALS}"
        if code == "AccessDeniedException" or status == 403:
            return (
                f"{missing}, and AWS Lambda denied pointcast's credentials access to its policy ({exc}): they need "
                f"{PERMISSIONS} on the function"
            )
        if code == "ResourceNotFoundException":
            return f"{missing}, nor in AWS Lambda (deleted, or not created yet?): {exc}"
    return f"{missing}, and AWS Lambda refused to give its policy: {exc}"


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call to AWS may succeed if made again: throttling, AWS's own errors, the network."""
    if isinstance(exc, ClientError):
        return is_throttle(exc) or (exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) >= 500
    return isinstance(exc, (ConnectionError, HTTPClientError))  # not NoCredentialsError, ParamValidationError, ...

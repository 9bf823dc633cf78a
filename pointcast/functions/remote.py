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
import threading
import time
from typing import TYPE_CHECKING, Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

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
        name = ref.arn(region, ref.account) if ref.account else ref.name
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
            try:
                answer = client.invoke(**self._target(ref, region), Payload=event, LogType="Tail")
            except Exception as exc:  # connection errors, throttling, not found: all a failed try
                took = (time.monotonic() - started) * 1000
                payload = orjson.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})
                timed_out = "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower()
                return Invocation("", payload, "Unhandled", "", took, timed_out=timed_out)
            logs = answer.get("LogResult")
            return Invocation(
                answer.get("ResponseMetadata", {}).get("RequestId", ""),
                answer["Payload"].read(),
                answer.get("FunctionError"),
                base64.b64decode(logs).decode("utf-8", "replace") if logs else "",
                (time.monotonic() - started) * 1000,
            )

        invocation: Invocation = await self._run(call)
        return invocation


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call to AWS may succeed if made again: throttling, AWS's own errors, the network."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return status == 429 or status >= 500 or "Throttl" in code or code == "TooManyRequestsException"
    return isinstance(exc, (ConnectionError, HTTPClientError))  # not NoCredentialsError, ParamValidationError, ...

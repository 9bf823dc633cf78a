"""What the pool is asked to run (``FunctionSpec``) and what one invocation gave back (``InvokeResult``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True)
class FunctionSpec:
    """One function as the pool runs it; a new ``revision`` means new code or configuration."""

    name: str
    arn: str  # unqualified: arn:aws:lambda:REGION:ACCOUNT:function:NAME
    revision: str
    runtime: str  # "python3.12", "nodejs20.x", ...
    handler: str  # "index.lambda_handler" / "index.handler"
    code_dir: Path  # the unpacked zip; read-only for the pool
    environment: Mapping[str, str]
    timeout: float  # seconds
    memory_mb: int
    concurrency: int  # at most this many invocations (workers) at once
    log_format: str = "Text"  # LoggingConfig.LogFormat: "Text" or "JSON"
    log_level: str | None = None  # LoggingConfig.ApplicationLogLevel (with JSON; Lambda's default there: INFO)

    @property
    def is_node(self) -> bool:
        return self.runtime.startswith("nodejs")


@dataclass(frozen=True)
class InvokeResult:
    """One invocation's outcome, shaped like Lambda's Invoke response.

    ``function_error`` is None on success and "Unhandled" otherwise (the X-Amz-Function-Error header); then
    ``payload`` is the error document. ``logs`` is what the worker wrote during the invocation (a fresh worker's
    init output included) and ``duration_ms`` runs from handing the event to the worker until its answer.
    ``init_ms`` is the worker's init (its start until it first asked for an event), given with the first call a
    worker served, as Lambda gives ``Init Duration`` on a cold start; ``max_memory_mb`` is the worker's peak
    resident memory so far (Lambda's ``Max Memory Used``), None when it could not be read.
    """

    request_id: str
    payload: bytes
    function_error: str | None
    logs: str
    duration_ms: float
    timed_out: bool = False
    throttled: bool = False  # nothing ran: no worker was free within the call's wait (``WorkerPool.invoke``)
    init_ms: float | None = None
    max_memory_mb: int | None = None


def error_document(error_type: str, message: str, trace: list[str] | None = None) -> bytes:
    """A Lambda-style error payload, as the runtimes post it."""
    doc: dict[str, Any] = {"errorMessage": message, "errorType": error_type}
    if trace is not None:
        doc["stackTrace"] = trace
    return orjson.dumps(doc)

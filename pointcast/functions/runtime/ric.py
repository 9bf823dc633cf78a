"""What a Python worker runs: AWS's ``awslambdaric`` with a faster marshaller and, optionally, a pipe transport.

This file is executed inside the worker process (``launch.command`` loads it by path under a private module name,
so the handler's own ``sys.path`` and module names are untouched); it imports only the standard library,
``awslambdaric``, ``simplejson`` (awslambdaric's own) and ``orjson``.

Both are awslambdaric's own extension points, and its bootstrap loop (``bootstrap.run``: handler import, init
errors, ``LambdaContext``, logging, error documents) runs unchanged:

- **The marshaller** (``BaseLambdaRuntimeClient.marshaller``, documented there as replaceable). awslambdaric decodes
  and encodes with simplejson; for a 50-endpoint event that is most of a warm invocation (bench/functions.py,
  docs/benchmarks.md). ``FastMarshaller`` uses orjson where the JSON value comes out the same, and hands the rest to
  awslambdaric's ``LambdaMarshaller``: events with a number of 19 or more digits (orjson would turn a big integer
  into a float) or that orjson refuses (lone surrogates, NaN), and answers orjson cannot encode exactly (Decimal,
  str/int/dict/list subclasses, namedtuples, datetimes, dataclasses, non-string keys, integers beyond 64 bits), that
  contain ``null`` (orjson writes NaN as null) or, before python3.12, non-ASCII text (older runtimes escape it).
  Two differences remain, both on answers Lambda itself refuses: a ``uuid.UUID`` and a plain ``enum.Enum`` member
  are encoded (as a string, as the member's value) instead of failing with ``Runtime.MarshalError``. Answers on the
  fast path are compact JSON (``{"a":1}``; simplejson writes ``{"a": 1}``).
- **The transport** (``BaseLambdaRuntimeClient``, whose subclasses AWS meant to supply ``handle_exception`` and
  friends). With ``_POINTCAST_RUNTIME_PIPE=R,W`` in the environment, the worker talks to the pool over two pipes
  instead of HTTP: the same four messages as the Runtime API (next, response, error, init error), as frames
  ``kind (1 byte) | head length (4) | body length (4) | head | body``. A response is sent together with the
  request for the next event, in one write, since awslambdaric's loop asks for the next event right after posting.
  Without that variable the worker is plain ``awslambdaric`` over the Runtime API (``AWS_LAMBDA_RUNTIME_API``).
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

import orjson
from awslambdaric import __main__ as ric_main
from awslambdaric import bootstrap
from awslambdaric.lambda_config import LambdaConfigProvider
from awslambdaric.lambda_runtime_client import BaseLambdaRuntimeClient, InvocationRequest
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller, to_json

PIPE_ENV = "_POINTCAST_RUNTIME_PIPE"
FRAME = struct.Struct("!cII")  # kind, head length, body length
NEXT, EVENT, RESPONSE, ERROR, INIT_ERROR = b"N", b"E", b"R", b"X", b"I"
_DIGIT_MAP = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))  # digits -> b"0", the rest -> b" "
_RUN = b"0" * 19


def _long_number(data: bytes) -> bool:
    """True if a JSON number in ``data`` has 19+ digits (orjson would make a float of an integer beyond 64 bits).

    A number starts the document or follows ':', ',' or '[' (then whitespace, then '-'); a long digit run inside a
    string (a device token, say) is taken for one only when it follows those, and then costs only the slower
    decoder. Digit runs are found with bytes.find on a translated copy: ~30 us for a 36 KB event, where a regular
    expression scanning all of it took ~480 us.
    """
    digits = data.translate(_DIGIT_MAP)
    start = digits.find(_RUN)
    while start >= 0:
        at = start - 1
        if at >= 0 and data[at] == 45:  # '-'
            at -= 1
        while at >= 0 and data[at] in b" \t\r\n":
            at -= 1
        if at < 0 or data[at] in b":,[":
            return True
        end = digits.find(b" ", start)
        if end < 0:
            return False
        start = digits.find(_RUN, end)
    return False


_PASSTHROUGH = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_UNICODE_RUNTIMES = {f"AWS_Lambda_python3.{minor}" for minor in range(12, 40)}  # ensure_ascii=False there


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is left to awslambdaric's encoder")


class FastMarshaller(LambdaMarshaller):
    """awslambdaric's marshaller with orjson where the JSON value comes out the same (see the module's text)."""

    def __init__(self) -> None:
        super().__init__()
        self.ascii_only = os.environ.get("AWS_EXECUTION_ENV") not in _UNICODE_RUNTIMES

    def unmarshal_request(self, request: Any, content_type: str = "application/json") -> Any:
        if content_type == "application/json" and isinstance(request, bytes) and not _long_number(request):
            try:
                return orjson.loads(request)
            except orjson.JSONDecodeError:
                pass
        return super().unmarshal_request(request, content_type)

    def marshal_response(self, response: Any) -> Any:
        if isinstance(response, bytes):
            return response, "application/unknown"
        try:
            data = orjson.dumps(response, default=_refuse, option=_PASSTHROUGH)
        except TypeError:
            return super().marshal_response(response)
        if b"null" in data or (self.ascii_only and not data.isascii()):
            return super().marshal_response(response)
        return data, "application/json"


class PipeRuntimeClient(BaseLambdaRuntimeClient):
    """awslambdaric's runtime client over two pipes to the pool (``pointcast.functions.runtime.pipe``)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        super().__init__("pipe")
        self._reader = os.fdopen(read_fd, "rb", buffering=256 * 1024)
        self._write_fd = write_fd
        self._held = b""  # a response, sent with the next request for an event

    def _send(self, kind: bytes, head: bytes, body: bytes, *, hold: bool = False) -> None:
        frame = FRAME.pack(kind, len(head), len(body)) + head + body
        if hold:
            self._held += frame
            return
        data = memoryview(self._held + frame)
        self._held = b""
        while data:
            data = data[os.write(self._write_fd, data) :]

    def _read(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) != size:  # the pool closed the pipe: it is stopping, or dropped this worker
            os._exit(0)
        return data

    def wait_next_invocation(self) -> InvocationRequest:
        self._send(NEXT, b"", b"")
        kind, head_size, body_size = FRAME.unpack(self._read(FRAME.size))
        if kind != EVENT:  # only events come this way; anything else means the pool is not who is talking
            os._exit(1)
        headers = orjson.loads(self._read(head_size))
        body = self._read(body_size)
        deadline = headers.get("Lambda-Runtime-Deadline-Ms")
        return InvocationRequest(
            invoke_id=headers.get("Lambda-Runtime-Aws-Request-Id"),
            x_amzn_trace_id=headers.get("Lambda-Runtime-Trace-Id"),
            invoked_function_arn=headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            deadline_time_in_ms=int(deadline) if deadline is not None else None,  # an int, as awslambdaric's C client
            client_context=headers.get("Lambda-Runtime-Client-Context"),
            cognito_identity=headers.get("Lambda-Runtime-Cognito-Identity"),
            tenant_id=headers.get("Lambda-Runtime-Aws-Tenant-Id"),
            content_type=headers.get("Content-Type"),
            event_body=body,
            invocation_id=headers.get("Lambda-Runtime-Invocation-Id"),
        )

    def post_invocation_result(
        self, invoke_id: str, result_data: Any, content_type: str = "application/json", invocation_id: Any = None
    ) -> None:
        body = result_data if isinstance(result_data, bytes) else result_data.encode("utf-8")
        self._send(RESPONSE, invoke_id.encode(), body, hold=True)

    def post_invocation_error(
        self, invoke_id: str, error_response_data: str, xray_fault: str, invocation_id: Any = None
    ) -> None:
        self._send(ERROR, invoke_id.encode(), error_response_data.encode("utf-8"), hold=True)

    def post_init_error(self, error_response_data: dict[str, Any], error_type_override: str | None = None) -> None:
        error_type = error_type_override or error_response_data.get("errorType") or ""
        self._send(INIT_ERROR, error_type.encode(), to_json(error_response_data).encode("utf-8"))

    def handle_exception(self, exc: BaseException, func_to_retry: Any = None, use_backoff: bool = False) -> Any:
        raise exc

    def handle_init_error(self, exc: BaseException) -> None:
        raise exc


class FramedLogSink(bootstrap.StandardLogSink):  # type: ignore[misc]
    """awslambdaric's sink for a runtime without Lambda's telemetry pipe, with each record ended by a newline and an
    error's lines joined by LF, as Lambda's own sink writes them. In
    Lambda every record is a frame of its own (one log event); written as they come, a record without a final newline
    (any with a traceback: ``log.exception``) ran on into the next output, ``KeyError: 'x'AFTER-PRINT``."""

    def log(self, msg: str, frame_type: Any = None) -> None:
        sys.stdout.write(msg if msg.endswith("\n") else msg + "\n")

    def log_error(self, message_lines: list[str]) -> None:
        # Lambda's sink (FramedTelemetryLogSink) joins an error's lines with LF; the standard one's CR, meant for a
        # console without the telemetry pipe, made a terminal print each traceback line over the one before.
        self.log("\n".join(message_lines))


def _task_root_first() -> None:
    """Lambda's Python runtimes search ``LAMBDA_TASK_ROOT`` first; ``python -c`` puts the current directory there
    instead (``''``), which a handler that changes directory loses."""
    root = os.environ.get("LAMBDA_TASK_ROOT")
    if root and sys.path and sys.path[0] == "":
        sys.path[0] = root


def main(argv: list[str]) -> None:
    _task_root_first()
    bootstrap.StandardLogSink = FramedLogSink
    BaseLambdaRuntimeClient.marshaller = FastMarshaller()
    pipe = os.environ.pop(PIPE_ENV, "")
    if not pipe:
        # awslambdaric's own __main__, with one knob turned: for python3.12+ it waits for each event on a new
        # thread, only so that the main thread can take signals meanwhile; pointcast signals a worker only with
        # SIGKILL, and the thread cost ~400 us of CPU per invocation (measured).
        LambdaConfigProvider.SUPPORTED_THREADPOLLING_ENVS = frozenset()
        ric_main.main(argv)
        return
    read_fd, write_fd = (int(fd) for fd in pipe.split(","))
    for fd in (read_fd, write_fd):
        os.set_inheritable(fd, False)
    bootstrap.run(argv[1], PipeRuntimeClient(read_fd, write_fd))


if __name__ == "__main__":
    main(sys.argv)

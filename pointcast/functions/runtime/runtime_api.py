"""The Lambda Runtime API, served to one worker on its own 127.0.0.1 port.

A listener per worker makes the worker's identity the port it talks to: no token to forge or mix up, and a
worker can only ever fetch and answer its own invocations. Anyone on the host can connect to a loopback port, so a
connection is served only if its socket is one of the worker process's own open files (``peer_is``, read from
``/proc`` at its first request): another process, another function's handler or another user, is cut off.
Routes and headers are Lambda's (2018-06-01):

    GET  /2018-06-01/runtime/invocation/next          -> 200, the event, Lambda-Runtime-* headers
    POST /2018-06-01/runtime/invocation/{id}/response -> 202
    POST /2018-06-01/runtime/invocation/{id}/error    -> 202
    POST /2018-06-01/runtime/init/error               -> 202

It is a small HTTP/1.1 server on ``asyncio.Protocol`` rather than aiohttp.web: the only clients are the runtimes
the pool starts (curl inside awslambdaric, Node's http in bootstrap.js), requests are few and simple
(Content-Length bodies, keep-alive). Measured against aiohttp's low-level server, the server process's CPU per
invocation fell from ~290 to ~160 us, and invocations/s rose by a fifth (docs/benchmarks-functions.md). Anything
it does not understand (chunked bodies, malformed heads) gets a 4xx and the connection is closed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import orjson

PREFIX = b"/2018-06-01/runtime/"
NEXT = PREFIX + b"invocation/next"
INVOCATION = PREFIX + b"invocation/"
INIT_ERROR = PREFIX + b"init/error"
ERROR_TYPE = b"lambda-runtime-function-error-type"
MAX_HEAD = 64 * 1024
MAX_BODY = 6 * 1024 * 1024 + 100  # Lambda's synchronous response limit (6 MB), plus its slack
ACCEPTED = b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"OK"}'
REASONS = {400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 413: b"Payload Too Large"}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event as handed to the runtime: its request id, body and Lambda-Runtime-* headers."""

    request_id: str
    event: bytes
    headers: dict[str, str]


class Session(Protocol):
    """The worker behind the API: what each route does."""

    def next_invocation(self, deliver: Callable[[Delivery], None]) -> None:
        """Call ``deliver`` once, now or when the next event arrives."""

    def cancel_next(self, deliver: Callable[[Delivery], None]) -> None:
        """The connection waiting in ``next_invocation`` went away."""

    def posted_response(self, request_id: str, body: bytes) -> bool: ...

    def posted_error(self, request_id: str, body: bytes, error_type: str | None) -> bool: ...

    def posted_init_error(self, body: bytes, error_type: str | None) -> None: ...

    @property
    def pid(self) -> int | None:
        """The worker process's id, once it is started."""

    def response_too_large(self, request_id: str, size: int) -> bool: ...


def _error(status: int, error_type: str, message: str) -> bytes:
    body = orjson.dumps({"errorMessage": message, "errorType": error_type})
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % (status, REASONS.get(status, b"Error"), len(body)) + body


def _delivery_bytes(delivery: Delivery) -> list[bytes]:
    head = ["HTTP/1.1 200 OK\r\n"]
    head.extend(f"{name}: {value}\r\n" for name, value in delivery.headers.items())
    head.append(f"Content-Length: {len(delivery.event)}\r\n\r\n")
    return ["".join(head).encode("utf-8"), delivery.event]


class _Connection(asyncio.Protocol):
    """One keep-alive connection from the runtime; requests are handled one at a time, in order."""

    def __init__(self, session: Session, connections: set[_Connection]) -> None:
        self._session = session
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: tuple[bytes, bytes, dict[bytes, bytes], int] | None = None
        self._waiting: Callable[[Delivery], None] | None = None  # a GET next not answered yet
        self._keep_alive = True
        self._processing = False
        self._trusted = False  # the peer is the worker process itself (checked at the first request)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._connections.discard(self)
        if self._waiting is not None:
            self._session.cancel_next(self._waiting)
            self._waiting = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._process()

    def _process(self) -> None:
        self._processing = True
        try:
            while self._transport is not None and self._waiting is None:
                if self._head is None and not self._read_head():
                    return
                assert self._head is not None
                method, target, headers, length = self._head
                if len(self._buffer) < length:
                    return
                body = bytes(self._buffer[:length])
                del self._buffer[:length]
                self._head = None
                self._dispatch(method, target, headers, body)
        finally:
            self._processing = False

    def _read_head(self) -> bool:
        if not self._buffer:
            return False
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self._fail(400, "BadRequest", "request head too large")
            return False
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[: end + 4]
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._fail(400, "BadRequest", "malformed request line")
            return False
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self._fail(400, "BadRequest", "malformed header")
                return False
            headers[name.strip().lower()] = value.strip()
        if b"transfer-encoding" in headers:
            self._fail(400, "BadRequest", "only Content-Length bodies are accepted")
            return False
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            length = -1
        if length < 0:
            self._fail(400, "BadRequest", "bad Content-Length")
            return False
        connection = headers.get(b"connection", b"").lower()
        self._keep_alive = connection != b"close" and (parts[2] != b"HTTP/1.0" or connection == b"keep-alive")
        if length > MAX_BODY:
            self._too_large(parts[1], length)
            return False
        if headers.get(b"expect", b"").lower() == b"100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._head = (parts[0], parts[1], headers, length)
        return True

    def _dispatch(self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        if not self._trusted:
            self._trusted = self._transport is not None and _from_worker(self._transport, self._session.pid)
            if not self._trusted:
                self.abort()
                return
        if method == b"GET":
            if target != NEXT:
                self._reply(_error(404, "NotFound", f"no route GET {target.decode(errors='replace')}"))
                return
            self._waiting = deliver = self._deliver
            self._session.next_invocation(deliver)
            return
        if method != b"POST":
            self._reply(_error(405, "MethodNotAllowed", f"{method.decode(errors='replace')} is not allowed"))
            return
        raw_type = headers.get(ERROR_TYPE)
        error_type = raw_type.decode("utf-8", "replace") if raw_type is not None else None
        if target == INIT_ERROR:
            self._session.posted_init_error(body, error_type)
            self._reply(ACCEPTED)
            return
        request_id, what = self._invocation_route(target)
        if what == "response":
            known = self._session.posted_response(request_id, body)
        elif what == "error":
            known = self._session.posted_error(request_id, body, error_type)
        else:
            self._reply(_error(404, "NotFound", f"no route POST {target.decode(errors='replace')}"))
            return
        if known:
            self._reply(ACCEPTED)
        else:
            self._reply(_error(400, "InvalidRequestID", f"{request_id} is not this worker's current invocation"))

    @staticmethod
    def _invocation_route(target: bytes) -> tuple[str, str]:
        if not target.startswith(INVOCATION):
            return "", ""
        request_id, _, what = target[len(INVOCATION) :].decode("utf-8", "replace").partition("/")
        return request_id, what

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _deliver(self, delivery: Delivery) -> None:
        self._waiting = None
        if self._transport is None:
            return
        self._transport.writelines(_delivery_bytes(delivery))
        if not self._keep_alive:
            self._transport.close()
            return
        if self._buffer and not self._processing:
            self._process()

    def _reply(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)
            if not self._keep_alive:
                self._transport.close()

    def _too_large(self, target: bytes, size: int) -> None:
        request_id, _ = self._invocation_route(target)
        self._session.response_too_large(request_id, size)
        self._fail(413, "RequestEntityTooLarge", f"body of {size} bytes is over {MAX_BODY}")

    def _fail(self, status: int, error_type: str, message: str) -> None:
        self._keep_alive = False
        self._buffer.clear()
        self._reply(_error(status, error_type, message))


def _from_worker(transport: asyncio.Transport, pid: int | None) -> bool:
    peer, ours = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
    if pid is None or not peer or not ours:
        return False
    verdict = peer_is(pid, peer[0], peer[1], ours[1])
    return verdict is not False  # None: this system has no /proc to tell (not Linux)


def peer_is(pid: int, host: str, port: int, listening_port: int) -> bool | None:
    """Whether the IPv4 TCP socket at ``host:port`` connected to our ``listening_port`` is one of process ``pid``'s
    open files: its inode from ``/proc/net/tcp``, then the process's descriptors. None when ``/proc`` is missing."""
    try:
        with open("/proc/net/tcp", "rb") as table:
            lines = table.read().splitlines()[1:]
    except OSError:
        return None
    local = b"%08X:%04X" % (struct.unpack("=I", socket.inet_aton(host))[0], port)
    remote_port = b":%04X" % listening_port
    inode = next((f[9] for f in map(bytes.split, lines) if f[1] == local and f[2].endswith(remote_port)), None)
    if inode is None:
        return False
    wanted = f"socket:[{inode.decode()}]"
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                return True
        except OSError:
            continue
    return False


class RuntimeApi:
    """The listener for one worker's Runtime API."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._listener: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.address = ""

    async def start(self) -> str:
        """Listen on an ephemeral 127.0.0.1 port; returns "127.0.0.1:PORT" (for AWS_LAMBDA_RUNTIME_API)."""
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: _Connection(self._session, self._connections), "127.0.0.1", 0, backlog=8
        )
        port = self._listener.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def close(self) -> None:
        """Stop listening and drop open connections (the worker is gone by now)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for connection in list(self._connections):
            connection.abort()

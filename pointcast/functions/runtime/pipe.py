"""The pool's end of the pipe transport: the Runtime API's four messages over two pipes to one Python worker.

The worker's end is ``ric.PipeRuntimeClient`` (awslambdaric's runtime client with another transport). Frames are
``kind (1 byte) | head length (4) | body length (4) | head | body``:

    worker -> pool   N  (empty)                 the runtime asks for the next event (Runtime API: GET next)
    pool -> worker   E  headers (JSON) | event  the event with its Lambda-Runtime-* headers
    worker -> pool   R  request id | answer     POST .../response
    worker -> pool   X  request id | error      POST .../error
    worker -> pool   I  error type | error      POST /init/error

Why: the Runtime API costs two HTTP exchanges over TCP loopback per invocation, and a loopback TCP send of a
36 KB event costs the sender the receive path too; over pipes the server's CPU per invocation and the worker's
client code shrink (numbers in docs/benchmarks.md). The worker calls the same ``Session`` methods either way, so
every rule about an invocation's end (timeouts, exits, init errors, too-large answers) lives in ``worker.py`` once.
A worker that writes anything else on its pipe is killed (its ``Session.kill``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Callable
from typing import Protocol, cast

import orjson

from pointcast.functions.runtime.runtime_api import MAX_BODY, Delivery, Session

PIPE_ENV = "_POINTCAST_RUNTIME_PIPE"  # "R,W": the worker's read and write descriptors (ric.PIPE_ENV)
FRAME = struct.Struct("!cII")
MAX_HEAD = 64 * 1024


class PipeSession(Session, Protocol):
    def kill(self) -> None: ...


class _Reader(asyncio.Protocol):
    """Parses the worker's frames and calls the session; a body over MAX_BODY is skipped, not kept."""

    def __init__(self, session: PipeSession, deliver: Callable[[Delivery], None]) -> None:
        self._session = session
        self._deliver = deliver
        self._buffer = bytearray()
        self._skip = 0  # bytes of an oversized body still to drop

    def data_received(self, data: bytes) -> None:
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buffer += data
        while len(self._buffer) >= FRAME.size:
            kind, head_size, body_size = FRAME.unpack_from(self._buffer)
            if head_size > MAX_HEAD or kind not in b"NRXI" or (kind == b"N" and head_size + body_size):
                self._broken()
                return
            end = FRAME.size + head_size
            if body_size > MAX_BODY and len(self._buffer) >= end:
                request_id = self._buffer[FRAME.size : end].decode("utf-8", "replace")
                available = len(self._buffer) - end
                self._skip = max(0, body_size - available)
                del self._buffer[: end + min(available, body_size)]
                self._session.response_too_large(request_id, body_size)
                continue
            if len(self._buffer) < end + body_size:
                return
            head = bytes(self._buffer[FRAME.size : end])
            body = bytes(self._buffer[end : end + body_size])
            del self._buffer[: end + body_size]
            self._dispatch(kind, head.decode("utf-8", "replace"), body)

    def _dispatch(self, kind: bytes, head: str, body: bytes) -> None:
        session = self._session
        if kind == b"N":
            session.next_invocation(self._deliver)
        elif kind == b"R":
            session.posted_response(head, body)
        elif kind == b"X":
            session.posted_error(head, body, None)
        else:
            session.posted_init_error(body, head or None)

    def _broken(self) -> None:
        self._buffer.clear()
        self._session.kill()


class PipeChannel:
    """Two pipes between the pool and one worker process."""

    def __init__(self, session: PipeSession) -> None:
        self._session = session
        self._child_fds: tuple[int, int] | None = None
        self._parent_fds: list[int] = []
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None

    def open(self) -> tuple[int, int]:
        """Create the pipes; returns the worker's (read, write) descriptors, to pass to the process."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._child_fds = (to_child_r, from_child_w)
        self._parent_fds = [from_child_r, to_child_w]
        return self._child_fds

    async def connect(self) -> None:
        """After the process has started: close its ends here, and watch ours."""
        self.close_child_fds()
        loop = asyncio.get_running_loop()
        read_fd, write_fd = self._parent_fds
        self._parent_fds = []
        self._reader, _ = await loop.connect_read_pipe(
            lambda: _Reader(self._session, self._deliver), os.fdopen(read_fd, "rb", buffering=0)
        )
        writer_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(write_fd, "wb", buffering=0))
        self._writer = cast(asyncio.WriteTransport, writer_transport)

    def _deliver(self, delivery: Delivery) -> None:
        if self._writer is None or self._writer.is_closing():
            return
        head = orjson.dumps(delivery.headers)
        self._writer.writelines([FRAME.pack(b"E", len(head), len(delivery.event)), head, delivery.event])

    def close_child_fds(self) -> None:
        if self._child_fds is not None:
            for fd in self._child_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._child_fds = None

    def close(self) -> None:
        """Close both pipes (the worker is gone, or going)."""
        self.close_child_fds()
        for fd in self._parent_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._parent_fds = []
        for transport in (self._writer, self._reader):
            if transport is not None:
                transport.close()
        self._writer = self._reader = None

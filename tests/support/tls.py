"""Real TLS endpoints on 127.0.0.1 for tests: a trustme CA, an HTTPS receiver, a silent server.

Typical use::

    ca = TestCA(tmp_path)                       # writes ca.ca_path for POINTCAST_CA_BUNDLE
    with TLSReceiver(ca, account_id="000000000000") as rx:
        ...  # point the code under test at rx.url
        rx.responder = lambda rec: (500, {}, b"boom")
        rx.wait_for_requests(3)
        assert rx.requests[0].body == b"..."

The receiver is aiohttp.web on its own event loop in a daemon thread, so it serves
HTTP/1.1 keep-alive connections and thousands of small POSTs per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import selectors
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeAlias

import trustme
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "ACCOUNT_ID_HEADER",
    "Reply",
    "RequestRecord",
    "Responder",
    "SilentServer",
    "TLSReceiver",
    "TestCA",
    "free_port",
    "silent_server",
]

ACCOUNT_ID_HEADER = "X-Amz-Pinpoint-AccountId"
_STOP_TIMEOUT = 5.0

HeadersLike: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]]
Reply: TypeAlias = tuple[int, HeadersLike, bytes | str | AsyncIterable[bytes]]
"""What a responder returns: (status, headers, body); a body that is an async iterable is streamed (chunked), chunk
by chunk, until it ends or the client goes away."""


@dataclass(frozen=True)
class RequestRecord:
    """One request the receiver got."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)
    peer: tuple[str, int] | None = None  # the client's address: the same for requests over one connection


Responder: TypeAlias = Callable[[RequestRecord], Reply | Awaitable[Reply]]
"""Sync or async callable answering a request; async ones can ``await asyncio.sleep`` to be slow."""


class TestCA:
    """A throwaway trustme CA with a server certificate for 127.0.0.1 and localhost.

    The CA certificate is written as PEM to ``directory``; ``ca_path`` is its path.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, directory: str | Path, filename: str = "pointcast-test-ca.pem") -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = Path(directory) / filename
        self.ca_path.parent.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(self.ca_path))

    def server_ssl_context(self) -> ssl.SSLContext:
        """A server-side context presenting the 127.0.0.1/localhost certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(ctx)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA."""
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


def _default_responder(record: RequestRecord) -> Reply:
    return 200, {"Content-Type": "application/json"}, b"{}"


class TLSReceiver:
    """HTTPS server on 127.0.0.1 (ephemeral port) that records requests and answers as told.

    HEAD is answered with ``head_status`` and, unless ``account_id`` is None, the
    X-Amz-Pinpoint-AccountId header — or by ``head_responder`` when one is set.
    Every other method goes to ``responder``. All requests, HEAD included, are
    recorded. ``account_id``, ``head_status``, ``head_responder`` and ``responder``
    can be changed while the server runs.
    """

    def __init__(
        self,
        ca: TestCA,
        *,
        account_id: str | None = None,
        path: str = "/hook",
        responder: Responder | None = None,
        head_status: int = 200,
        head_responder: Responder | None = None,
    ) -> None:
        self.ca = ca
        self.account_id = account_id
        self.path = path
        self.responder: Responder = responder or _default_responder
        self.head_status = head_status
        self.head_responder = head_responder
        self.port: int | None = None
        self._records: list[RequestRecord] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- properties -----------------------------------------------------------------

    @property
    def ca_path(self) -> Path:
        """PEM file of the CA that signed the server certificate."""
        return self.ca.ca_path

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        if self.port is None:
            raise RuntimeError("TLSReceiver is not running")
        return f"https://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT/hook`` (or the configured path)."""
        return self.base_url + self.path

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the requests received so far, oldest first."""
        with self._cond:
            return list(self._records)

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._cond:
            self._records.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0, method: str | None = None) -> list[RequestRecord]:
        """Wait for ``count`` requests (of ``method`` if given); return them, or raise TimeoutError."""

        def matching() -> list[RequestRecord]:
            return [r for r in self._records if method is None or r.method == method]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise TimeoutError(f"got {len(matching())} of {count} requests within {timeout} s")
            return matching()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("TLSReceiver already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, args=(loop,), name="TLSReceiver", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start_site(), loop).result(timeout=_STOP_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving (bounded: in-flight requests are cancelled after ~0.5 s) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None and loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=_STOP_TIMEOUT)
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()
        self._runner = None
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()
        # Cancel whatever is left (e.g. slow responders) so the loop closes cleanly.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    async def _start_site(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown_timeout keeps stop() quick while a slow responder is in flight (aiohttp waits
        # up to twice that); handler_cancellation stops slow handlers once their client hangs up.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25, handler_cancellation=True)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ca.server_ssl_context(), backlog=1024)
        await site.start()
        self.port = runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=body,
            peer=request.transport.get_extra_info("peername") if request.transport else None,
        )
        with self._cond:
            self._records.append(record)
            self._cond.notify_all()

        if request.method == "HEAD" and self.head_responder is None:
            head_headers = {} if self.account_id is None else {ACCOUNT_ID_HEADER: self.account_id}
            return web.Response(status=self.head_status, headers=head_headers)

        responder = self.head_responder if request.method == "HEAD" else self.responder
        assert responder is not None
        reply = responder(record)
        if inspect.isawaitable(reply):
            reply = await reply
        status, headers, payload = reply
        if isinstance(payload, str):
            payload = payload.encode()
        if isinstance(payload, bytes):
            return web.Response(status=status, headers=CIMultiDict(headers), body=payload)
        streamed = web.StreamResponse(status=status, headers=CIMultiDict(headers))
        await streamed.prepare(request)
        with contextlib.suppress(ConnectionError):
            async for chunk in payload:
                await streamed.write(chunk)
            await streamed.write_eof()
        return streamed


# -- servers that do not answer -----------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (connecting to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SilentServer:
    """Where a :func:`silent_server` listens."""

    port: int
    path: str = "/hook"

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT/hook``."""
        return f"https://127.0.0.1:{self.port}{self.path}"


@contextlib.contextmanager
def silent_server(path: str = "/hook") -> Iterator[SilentServer]:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept_forever() -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while not stop.is_set():
                if selector.select(timeout=0.05):
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        conn, _ = listener.accept()
                        held.append(conn)  # keep it open, never read or write

    thread = threading.Thread(target=accept_forever, name="silent_server", daemon=True)
    thread.start()
    try:
        yield SilentServer(port=listener.getsockname()[1], path=path)
    finally:
        stop.set()
        thread.join(timeout=_STOP_TIMEOUT)
        for conn in held:
            conn.close()
        listener.close()

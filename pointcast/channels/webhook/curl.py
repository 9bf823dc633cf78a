"""libcurl (pycurl) driven by the asyncio event loop: the webhook hot path's POSTs.

libcurl's multi interface tells the loop which sockets to watch (``M_SOCKETFUNCTION``) and when to wake it
(``M_TIMERFUNCTION``); the loop hands each readiness back with ``socket_action``. Connections are kept alive in the
multi handle's cache and reused by every request to the same host. docs/benchmarks.md ("libcurl for the POSTs") has
the numbers that chose it: a 34 KB POST over TLS costs the server 0.54-0.67 of aiohttp's CPU.

Only what a webhook delivery needs: a POST with a body and headers, a total timeout, no redirects, no proxies from
the environment (aiohttp's default), and back the status, the body's first ``keep`` bytes and ``Retry-After`` in
seconds (``retry_after``: the header's delay-seconds, or its HTTP date as seconds from now). A body is read to its
end up to ``most`` bytes, so that a short one leaves the connection reusable; a longer one is cut off there
(``Reply.cut``) and its connection closed.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import ssl
import time
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

try:
    import pycurl
except ImportError:  # the runner then posts with aiohttp (settings.delivery_client "auto")
    pycurl = None

log = logging.getLogger("pointcast.delivery")
KEEPALIVE_SECONDS = 30  # how long an idle connection is kept for reuse (aiohttp's keepalive_timeout alike)


def retry_after(value: str | bytes | None) -> float | None:
    """A ``Retry-After`` value in seconds (RFC 9110 10.2.3): delay-seconds, or an HTTP date as the seconds from now
    (0 when it has passed); None when there is none or it is neither (the sender's own backoff then)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)  # delay-seconds is an integer; a fraction is taken too
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": no zone given, read as UTC (as HTTP dates are)
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None  # not nan, inf or negative


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes  # the body's first bytes, as many as the caller keeps
    retry_after: float | None
    cut: bool = False  # the body went on past what was read of it


class PostFailed(Exception):
    """No response: ``reason`` says why, in the words a delivery's attempt records."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Body:
    """A response body's first ``keep`` bytes, read on up to ``most`` bytes in all (then the transfer is cut off),
    and its ``Retry-After`` header."""

    __slots__ = ("chunks", "cut", "left", "retry_after", "unread")

    def __init__(self, keep: int, most: int) -> None:
        self.chunks: list[bytes] = []
        self.left = keep  # bytes still to keep
        self.unread = max(keep, most)  # bytes still to read before the transfer is cut off
        self.cut = False
        self.retry_after: float | None = None

    def header(self, line: bytes) -> None:
        if line[:5] == b"HTTP/":
            self.retry_after = None  # a new response's head (after an interim 1xx): only the last one's counts
        elif line[:12].lower() == b"retry-after:":
            self.retry_after = retry_after(line[12:])

    def write(self, data: bytes) -> int | None:
        if self.left > 0:
            self.chunks.append(data[: self.left] if len(data) > self.left else data)
            self.left -= len(data)
        self.unread -= len(data)
        if self.unread < 0:
            self.cut = True
            return 0  # fewer bytes taken than given: libcurl ends the transfer (CURLE_WRITE_ERROR)
        return None


class CurlSession:
    """POSTs over one libcurl multi handle, at most ``limit`` connections at a time (the rest queue in libcurl)."""

    def __init__(
        self, *, limit: int, cainfo: str | None = None, capath: str | None = None, user_agent: str | None = None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, limit)
        self._multi.setopt(pycurl.M_MAXCONNECTS, limit)
        self._cainfo = cainfo
        self._capath = capath
        self._user_agent = user_agent
        self._watched: dict[int, int] = {}  # fd -> what libcurl asked to watch (POLL_IN/OUT/INOUT)
        self._timer: asyncio.TimerHandle | None = None
        self._free: list[pycurl.Curl] = []
        self._waiting: dict[pycurl.Curl, tuple[asyncio.Future[Reply], _Body, float]] = {}
        self._closed = False

    # libcurl's callbacks: they only (re)arm the loop, never call back into libcurl
    def _on_socket(self, what: int, fd: int, _multi: Any, _data: Any) -> None:
        old = self._watched.pop(fd, 0)
        if old & pycurl.POLL_IN:
            self._loop.remove_reader(fd)
        if old & pycurl.POLL_OUT:
            self._loop.remove_writer(fd)
        if what == pycurl.POLL_REMOVE:
            return
        if what & pycurl.POLL_IN:
            self._loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        if what & pycurl.POLL_OUT:
            self._loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        self._watched[fd] = what

    def _on_timer(self, ms: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if ms >= 0:
            self._timer = self._loop.call_later(ms / 1000, self._act, pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, event: int) -> None:
        if fd == pycurl.SOCKET_TIMEOUT:
            self._timer = None
        if self._closed:
            return
        try:
            self._multi.socket_action(fd, event)
        except pycurl.error as exc:  # the multi handle's own trouble; a transfer's failure comes through info_read
            log.warning("libcurl: socket_action(%s) failed: %s", fd, exc)
        self._finish()

    def _finish(self) -> None:
        while True:
            queued, done, failed = self._multi.info_read()
            for handle in done:
                self._settle(handle, None, "")
            for handle, code, message in failed:
                self._settle(handle, code, message)
            if not queued:
                return

    def _settle(self, handle: pycurl.Curl, code: int | None, message: str) -> None:
        self._multi.remove_handle(handle)
        waiting = self._waiting.pop(handle, None)
        if waiting is None:  # not one of ours any more (its caller was cancelled): nothing waits for it
            handle.close()
            return
        future, body, timeout = waiting
        if code is None or (code == pycurl.E_WRITE_ERROR and body.cut):
            status = handle.getinfo(pycurl.RESPONSE_CODE)
            result: Reply | PostFailed = Reply(status, b"".join(body.chunks), body.retry_after, body.cut)
        else:
            result = PostFailed(_reason(handle, code, message, timeout))
        handle.setopt(pycurl.WRITEFUNCTION, _discard)  # let go of the body's buffer
        handle.setopt(pycurl.HEADERFUNCTION, _discard)
        self._free.append(handle)
        if not future.done():
            if isinstance(result, Reply):
                future.set_result(result)
            else:
                future.set_exception(result)

    def _handle(self) -> pycurl.Curl:
        if self._free:
            return self._free.pop()
        handle = pycurl.Curl()
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.POST, 1)
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        handle.setopt(pycurl.PROXY, "")  # not from the environment
        handle.setopt(pycurl.TCP_NODELAY, 1)
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)  # as aiohttp: no HTTP/2 by ALPN
        handle.setopt(pycurl.MAXAGE_CONN, KEEPALIVE_SECONDS)  # an idle connection older than this is not reused
        if self._user_agent:
            handle.setopt(pycurl.USERAGENT, self._user_agent)
        if self._cainfo:
            handle.setopt(pycurl.CAINFO, self._cainfo)
        if self._capath:
            handle.setopt(pycurl.CAPATH, self._capath)
        return handle

    async def post(self, url: str, body: bytes, headers: list[str], timeout: float, keep: int, most: int) -> Reply:
        """POST ``body``; the reply, or PostFailed. Of the response body ``keep`` bytes are kept, and it is read up
        to ``most`` bytes (at least ``keep``): past that the transfer is cut off and its connection closed."""
        if self._closed:
            raise PostFailed("the delivery session is closed")
        handle = self._handle()
        sink = _Body(keep, most)
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.POSTFIELDS, body)
        handle.setopt(pycurl.HTTPHEADER, headers)
        handle.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
        handle.setopt(pycurl.WRITEFUNCTION, sink.write)
        handle.setopt(pycurl.HEADERFUNCTION, sink.header)
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._waiting[handle] = (future, sink, timeout)
        self._multi.add_handle(handle)  # libcurl asks for a timer at once; the request starts from it
        try:
            return await future
        except asyncio.CancelledError:
            if handle in self._waiting:
                self._waiting.pop(handle)
                self._multi.remove_handle(handle)
                handle.close()  # its connection state is unknown: not reused
            raise

    async def close(self) -> None:
        self._closed = True
        for handle, (future, _body, _timeout) in list(self._waiting.items()):
            self._multi.remove_handle(handle)
            handle.close()
            if not future.done():
                future.set_exception(PostFailed("the delivery session was closed"))
        self._waiting.clear()
        if self._timer is not None:
            self._timer.cancel()
        for fd, what in self._watched.items():
            if what & pycurl.POLL_IN:
                self._loop.remove_reader(fd)
            if what & pycurl.POLL_OUT:
                self._loop.remove_writer(fd)
        self._watched.clear()
        for handle in self._free:
            handle.close()
        self._free.clear()
        self._multi.close()


def trust_of(context: ssl.SSLContext, ca_bundle: str | None, where: Path) -> tuple[str, str | None]:
    """What ``context`` trusts, for libcurl: its loaded certificates written to ``where`` as one PEM file (the
    system's file, certifi's, ``ca_bundle`` when a file), and the directories it looks certificates up in (the
    system's, ``ca_bundle`` when one), joined with ":" as OpenSSL reads them.

    A file rather than libcurl's CAINFO_BLOB: libcurl keeps the store it parses from a file for every connection
    of the multi handle, and parses a blob again for each (bench.webhook_campaign's peak RSS: 199 MB with a blob,
    157-160 MB with the file, 146-149 MB on aiohttp).
    """
    pem = "".join(ssl.DER_cert_to_PEM_cert(der) for der in context.get_ca_certs(binary_form=True))
    where.parent.mkdir(parents=True, exist_ok=True)
    partial = where.with_name(f".{where.name}.{os.getpid()}")
    partial.write_text(pem)
    partial.replace(where)
    system = ssl.get_default_verify_paths().capath
    dirs = [d for d in (system, ca_bundle) if d and os.path.isdir(d)]
    return str(where), ":".join(dirs) or None


def _discard(_data: bytes) -> None:
    return None


# A failed attempt's reason in the words both clients use (deliver.py's aiohttp path too).
NO_ANSWER = "the server closed the connection without a response"
BROKEN_ANSWER = "the connection broke while the answer was read"


def _reason(handle: pycurl.Curl, code: int, message: str, timeout: float) -> str:
    """A failed transfer in the words aiohttp's path uses (deliver.py), so both read the same in the records."""
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return f"timed out after {timeout} s"
    if code == pycurl.E_COULDNT_CONNECT:
        number = handle.getinfo(pycurl.OS_ERRNO)
        return f"could not connect ({os.strerror(number) if number else message})"
    if code == pycurl.E_COULDNT_RESOLVE_HOST:
        return f"the host name could not be resolved ({message})"
    broken = (pycurl.E_GOT_NOTHING, pycurl.E_SEND_ERROR, pycurl.E_RECV_ERROR, pycurl.E_PARTIAL_FILE)
    if code in broken and not handle.getinfo(pycurl.RESPONSE_CODE):
        return NO_ANSWER  # or reset it, before a status line came
    if code in broken:
        return f"{BROKEN_ANSWER} ({message})"
    if code == pycurl.E_PEER_FAILED_VERIFICATION:
        return f"TLS certificate verification failed ({message})"
    return message or f"libcurl error {code}"

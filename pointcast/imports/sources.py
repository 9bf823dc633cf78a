"""Where an import job reads its file: ``S3Url`` names a file the server can read, since pointcast cannot reach S3.

Accepted: an absolute local path (``/data/endpoints.csv``), a ``file://`` URL (``file:///data/endpoints.csv``, host
empty or ``localhost``), or an ``https://`` URL, fetched with the server's TLS trust (``POINTCAST_CA_BUNDLE``). Anything
else, ``s3://`` included, is refused with a BadRequestException that says so. Any file the server process may read
can be imported by any caller with credentials: pointcast trusts its callers as the account owner.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import threading
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiohttp

from pointcast.aws.errors import BadRequest
from pointcast.imports.formats import FileError

_ACCEPTED = "pointcast reads local paths (/data/endpoints.csv), file:// URLs and https:// URLs"
READ_TIMEOUT = 30.0
"""Seconds an https source may go silent before the job fails."""


@dataclass(frozen=True, slots=True)
class Source:
    """A readable location: a local path or an https URL."""

    kind: Literal["file", "https"]
    location: str


def parse(url: str, *, check: bool = True) -> Source:
    """The source ``url`` names; with ``check``, a local file must exist and be readable (BadRequest otherwise)."""
    where = f"ImportJobRequest.S3Url '{url[:200]}'"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise BadRequest(f"{where} has no host")
        return Source("https", url)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BadRequest(f"{where}: a file:// URL must name a file on this server (no host, or localhost)")
        path = unquote(parts.path)
    elif scheme == "s3":
        raise BadRequest(f"{where}: pointcast cannot read from Amazon S3; {_ACCEPTED}")
    elif scheme:
        raise BadRequest(f"{where}: {scheme}:// is not accepted; {_ACCEPTED}")
    else:
        path = url
    if not os.path.isabs(path):
        raise BadRequest(f"{where}: a local path must be absolute; {_ACCEPTED}")
    if check and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise BadRequest(f"{where}: no readable file at {path} on the server")
    return Source("file", path)


def open_file(path: str) -> io.BufferedReader:
    """A local file, opened for reading; FileError when it cannot be."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise FileError(f"Cannot read {path}: {exc.strerror or exc}") from None


class Stopped(Exception):
    """The job was told to stop (server shutdown, lost lease): leave it to be resumed."""


class AsyncBody(io.RawIOBase):
    """An aiohttp response body, readable from a worker thread as a plain binary stream.

    Each read is handed to the event loop that owns the response and waited for, so the thread parses and writes
    while the loop keeps serving requests; at most one read (64 KiB) is in memory at a time.
    """

    def __init__(
        self, content: aiohttp.StreamReader, loop: asyncio.AbstractEventLoop, url: str, stop: threading.Event
    ) -> None:
        super().__init__()
        self.content = content
        self.loop = loop
        self.url = url
        self.stop = stop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.stop.is_set():
            raise Stopped
        try:
            future = asyncio.run_coroutine_threadsafe(self.content.read(len(buffer)), self.loop)
            data = future.result(timeout=READ_TIMEOUT * 2)
        except (RuntimeError, concurrent.futures.CancelledError) as exc:  # the server is stopping
            raise Stopped from exc
        except (concurrent.futures.TimeoutError, TimeoutError):
            raise FileError(f"Reading {self.url} timed out") from None
        except aiohttp.ClientError as exc:
            if self.stop.is_set():
                raise Stopped from exc
            raise FileError(f"Reading {self.url} failed: {exc or type(exc).__name__}") from None
        buffer[: len(data)] = data
        return len(data)

"""A local HTTPS webhook receiver for the demo and for trying campaigns on a laptop.

It answers Pinpoint's ``HEAD`` check with ``X-Amz-Pinpoint-AccountId`` and records every POSTed batch. Its
certificate comes from a throwaway CA (``trustme``) whose PEM it writes out, so pointcast can trust it through
``POINTCAST_CA_BUNDLE`` without touching the system trust store.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path
from typing import Any

import orjson
import trustme
from aiohttp import web


class LocalReceiver:
    """An aiohttp server on 127.0.0.1 in a background thread; ``batches`` holds the decoded POST bodies."""

    def __init__(self, account_id: str, ca_dir: Path, path: str = "/pointcast-hook") -> None:
        self.account_id = account_id
        self.path = path
        self.batches: list[dict[str, Any]] = []
        self._ca = trustme.CA()
        self.ca_path = ca_dir / "receiver-ca.pem"
        ca_dir.mkdir(parents=True, exist_ok=True)
        self._ca.cert_pem.write_to_path(str(self.ca_path))
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="pointcast-receiver", daemon=True)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{self.path}"

    def __enter__(self) -> LocalReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("HEAD", self.path, self._head)
        app.router.add_route("POST", self.path, self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        cert = self._ca.issue_cert("127.0.0.1", "localhost")
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ssl_context)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _head(self, _: web.Request) -> web.Response:
        return web.Response(headers={"X-Amz-Pinpoint-AccountId": self.account_id})

    async def _post(self, request: web.Request) -> web.Response:
        batch = orjson.loads(await request.read())
        with self._lock:
            self.batches.append(batch)
        return web.Response(status=200)

"""HTTP clients for the webhook hot path: aiohttp, httpx and libcurl (pycurl, curl_cffi), same payloads.

DESIGN.md chose aiohttp for webhook delivery and asked for it to be measured against httpx; these rows are why
deliveries now go through libcurl (``channels.webhook.curl``, the ``curl`` row). Each client POSTs the
same webhook payloads (``--payloads`` of ``--size`` bytes, the webhook benchmark's 50 endpoints are 34 KB) with
the same number in flight to the same receiver: nginx on 127.0.0.1 over TLS (bench/receivers.py), answering 200.

* ``aiohttp``: one ``ClientSession`` and ``TCPConnector(limit=N)`` on uvloop, N tasks: the webhook benchmark's
  bare client (``bench.webhook_campaign.post_all``), which posts the way ``channels.webhook.deliver`` does.
* ``httpx``: one ``AsyncClient`` (HTTP/1.1, at most N connections) on uvloop, N tasks.
* ``pycurl``: libcurl's multi interface with N easy handles reused (keep-alive), driven by a plain
  ``perform``/``select`` loop (no asyncio): the floor of what the library itself costs.
* ``curl``: pointcast's ``CurlSession`` (libcurl's multi interface driven by the event loop's readers, writers and
  timers) on uvloop, N tasks, with the headers ``channels.webhook.deliver`` sends.
* ``curl_cffi``: curl_cffi's ``AsyncSession`` (libcurl driven by asyncio, the maintained library for it) on uvloop,
  N tasks. Skipped, with the reason, when curl_cffi is not installed (``.venv/bin/pip install curl_cffi``).

    .venv/bin/python -m bench.http_clients [--payloads 4000] [--concurrency 32] [--rounds 2]

It prints, per client and round, requests/s and this process's CPU per request (user + system), and each against
aiohttp in the same round; every response must be a 200, or it exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.receivers import BenchCA, nginx_or_say, nginx_receiver
from bench.webhook_campaign import post_all
from pointcast.channels.webhook.deliver import BATCH_ID_HEADER, DRAIN, RESPONSE_KEEP
from pointcast.channels.webhook.verify import make_ssl_context

ACCOUNT = "000000000000"


def self_cpu() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _on_uvloop(work: Callable[[], object]) -> object:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work())  # type: ignore[arg-type]


def with_aiohttp(url: str, payloads: list[tuple[str, bytes, int]], concurrency: int, ca: Path) -> int:
    _start, _end, ok, errors = _on_uvloop(lambda: post_all(url, payloads, concurrency, ca))  # type: ignore[misc]
    if errors:
        raise RuntimeError(f"aiohttp: {len(errors)} failed, the first: {errors[0]}")
    return len(payloads) if ok else 0


async def _post_each(
    name: str, payloads: list[tuple[str, bytes, int]], concurrency: int, post: Callable[[str, bytes], Awaitable[int]]
) -> int:
    """Every payload POSTed once by ``concurrency`` tasks through ``post`` (batch id, body -> status); each answer
    must be a 200."""
    queue = iter(payloads)
    done = 0

    async def worker() -> None:
        nonlocal done
        for batch_id, body, _count in queue:
            status = await post(batch_id, body)
            if status != 200:
                raise RuntimeError(f"{name}: HTTP {status}")
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def _headers(batch_id: str) -> dict[str, str]:
    return {"Content-Type": "application/json", BATCH_ID_HEADER: batch_id}


def with_httpx(url: str, payloads: list[tuple[str, bytes, int]], concurrency: int, ca: Path) -> int:
    import httpx

    async def run() -> int:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(verify=make_ssl_context(str(ca)), limits=limits, timeout=10.0) as client:

            async def post(batch_id: str, body: bytes) -> int:
                return (await client.post(url, content=body, headers=_headers(batch_id))).status_code

            return await _post_each("httpx", payloads, concurrency, post)

    return _on_uvloop(run)  # type: ignore[return-value]


def with_pycurl(url: str, payloads: list[tuple[str, bytes, int]], concurrency: int, ca: Path) -> int:
    import pycurl

    multi = pycurl.CurlMulti()
    free = []
    for _ in range(concurrency):
        handle = pycurl.Curl()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.CAINFO, str(ca))
        handle.setopt(pycurl.POST, 1)
        handle.setopt(pycurl.TIMEOUT, 10)
        handle.setopt(pycurl.WRITEFUNCTION, lambda data: None)
        free.append(handle)
    queue = iter(payloads)
    done = active = 0
    more = True
    while more or active:
        while free and more:
            item = next(queue, None)
            if item is None:
                more = False
                break
            handle = free.pop()
            handle.setopt(pycurl.POSTFIELDS, item[1])
            handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in _headers(item[0]).items()])
            multi.add_handle(handle)
            active += 1
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, finished, failed = multi.info_read()
            for handle in finished:
                if handle.getinfo(pycurl.RESPONSE_CODE) != 200:
                    raise RuntimeError(f"pycurl: HTTP {handle.getinfo(pycurl.RESPONSE_CODE)}")
                multi.remove_handle(handle)
                free.append(handle)
                active -= 1
                done += 1
            if failed:
                raise RuntimeError(f"pycurl: {failed[0][2]}")
            if not queued:
                break
        if active:
            multi.select(1.0)
    return done


def with_curl_session(url: str, payloads: list[tuple[str, bytes, int]], concurrency: int, ca: Path) -> int:
    from pointcast.channels.webhook.curl import CurlSession

    async def run() -> int:
        session = CurlSession(limit=concurrency, cainfo=str(ca))

        async def post(batch_id: str, body: bytes) -> int:
            lines = [f"{name}: {value}" for name, value in _headers(batch_id).items()] + ["Expect:"]
            return (await session.post(url, body, lines, 10.0, RESPONSE_KEEP, DRAIN)).status

        try:
            return await _post_each("curl", payloads, concurrency, post)
        finally:
            await session.close()

    return _on_uvloop(run)  # type: ignore[return-value]


def with_curl_cffi(url: str, payloads: list[tuple[str, bytes, int]], concurrency: int, ca: Path) -> int:
    from curl_cffi.requests import AsyncSession

    async def run() -> int:
        async with AsyncSession(max_clients=concurrency) as client:

            async def post(batch_id: str, body: bytes) -> int:
                response = await client.post(url, data=body, headers=_headers(batch_id), verify=str(ca), timeout=10.0)
                return int(response.status_code)

            return await _post_each("curl_cffi", payloads, concurrency, post)

    return _on_uvloop(run)  # type: ignore[return-value]


CLIENTS: dict[str, Callable[[str, list[tuple[str, bytes, int]], int, Path], int]] = {
    "aiohttp": with_aiohttp,
    "httpx": with_httpx,
    "pycurl": with_pycurl,
    "curl": with_curl_session,
    "curl_cffi": with_curl_cffi,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payloads", type=int, default=4000)
    parser.add_argument("--size", type=int, default=34_000, help="bytes per payload")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    binary = nginx_or_say()
    if binary is None:
        return 2
    clients = dict(CLIENTS)
    try:
        import curl_cffi  # noqa: F401
    except ImportError:
        print("curl_cffi is not installed (.venv/bin/pip install curl_cffi): its rows are skipped")
        del clients["curl_cffi"]
    body = b'{"Endpoints":"' + b"x" * max(0, args.size - 17) + b'"}'
    payloads = [(f"{n:032x}", body, 50) for n in range(args.payloads)]
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {sys.version.split()[0]}")
    print(f"{args.payloads:,} POSTs of {len(body):,} bytes, {args.concurrency} in flight, to nginx over TLS")
    head = ("client", "round", "requests/s", "CPU us/request", "req/s vs aiohttp", "CPU vs aiohttp")
    print(f"{head[0]:>9} {head[1]:>5} {head[2]:>11} {head[3]:>15} {head[4]:>17} {head[5]:>15}")
    with tempfile.TemporaryDirectory(prefix="pointcast-http-") as tmp:
        ca = BenchCA.create(Path(tmp) / "ca")
        with nginx_receiver(binary, ca, ACCOUNT, Path(tmp) / "nginx") as receiver:
            for round_ in range(1, args.rounds + 1):
                base: tuple[float, float] | None = None
                for name, post in clients.items():
                    cpu, started = self_cpu(), time.monotonic()
                    done = post(receiver.url, payloads, args.concurrency, ca.ca_path)
                    seconds, used = time.monotonic() - started, self_cpu() - cpu
                    if done != len(payloads):
                        print(f"{name}: {done} of {len(payloads)} POSTs succeeded", file=sys.stderr)
                        return 1
                    rate, per = done / seconds, 1e6 * used / done
                    base = base or (rate, per)
                    ratios = f"{rate / base[0]:>17.2f} {per / base[1]:>15.2f}"
                    print(f"{name:>9} {round_:>5} {rate:>11,.0f} {per:>15.0f} {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

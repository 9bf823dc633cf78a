"""Webhook receivers for bench/webhook_campaign.py: nginx answering 200 at once, and a receiver that is slow on purpose.

Both listen on 127.0.0.1 with TLS, with a server certificate from a throwaway trustme CA (``BenchCA``), and answer
``HEAD`` with ``X-Amz-Pinpoint-AccountId`` so pointcast's webhook check passes.

* ``nginx_receiver``: Debian's nginx, configured from a temp dir (own ``nginx.conf``, ``daemon off``, pid, logs and
  temp paths in that dir), one worker process, keep-alive on, no access log; every request gets ``200 {}`` (``return``
  reads and discards a POST body). ``stub_status`` on ``/nginx_status`` counts requests, so the benchmark can check
  how many POSTs arrived without an access log.
* ``slow_receiver``: a raw ASGI app under uvicorn (this file run as a module) that reads the body, sleeps ``delay``
  seconds and answers ``200 {}``; ``GET /stats`` reports how many POSTs and body bytes it got.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ACCOUNT_HEADER = "X-Amz-Pinpoint-AccountId"
HOOK_PATH = "/hook"
NGINX_PACKAGES = ("nginx-light", "nginx")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class BenchCA:
    """A trustme CA and a 127.0.0.1/localhost server certificate, written as PEM files into ``directory``."""

    directory: Path
    ca_path: Path
    cert_path: Path
    key_path: Path

    @classmethod
    def create(cls, directory: Path) -> BenchCA:
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca_path, cert_path, key_path = directory / "ca.pem", directory / "server-chain.pem", directory / "server.key"
        ca.cert_pem.write_to_path(str(ca_path))
        cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_path))
        key_path.chmod(0o600)
        return cls(directory, ca_path, cert_path, key_path)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))


@dataclass
class Receiver:
    """A running receiver: its hook URL, its process, and how to read its request counter."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    stats_url: str
    ca: BenchCA
    access_log: Path | None = None  # nginx with log_batch_ids: "$msec $request_method $batch_id $status" lines
    reads: int = 0  # calls to stats(): nginx counts each of them as a request

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self) -> dict[str, float]:
        """``requests`` so far (POSTs for the slow receiver; every request for nginx's stub_status, so ``reads``
        says how many of them were these reads), and for the slow receiver ``area``, the request-seconds spent
        answering POSTs (its change over a window divided by the window is the mean number in flight)."""
        self.reads += 1
        with urllib.request.urlopen(self.stats_url, timeout=5, context=self.ca.client_context()) as response:
            text = response.read().decode()
        if text.startswith("{"):
            data = orjson.loads(text)
            return {"requests": int(data["posts"]), "area": float(data["area"]), "reads": 0}
        # stub_status: "Active connections: N \nserver accepts handled requests\n A B C \n..."; it counts itself
        return {"requests": int(text.splitlines()[2].split()[2]), "reads": self.reads}

    def requests_seen(self) -> int:
        """Requests (or POSTs, for the slow receiver) received so far."""
        return int(self.stats()["requests"])


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a child we started (TERM, then KILL after 15 s); a no-op if it already exited."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def wait_https_head(url: str, process: subprocess.Popen[bytes], ca: BenchCA, timeout: float, log: Path) -> None:
    """Wait until ``HEAD url`` answers with the account header (or raise with the process's log)."""
    deadline = time.monotonic() + timeout
    context = ca.client_context()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited early:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=1.0, context=context) as response:
                if response.headers.get(ACCOUNT_HEADER):
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text(errors='replace')[-4000:]}")


# --------------------------------------------------------------------------------------------------------------
# nginx


def nginx_binary() -> str | None:
    """The nginx executable, if installed (also looks in /usr/sbin, which a non-root PATH may lack)."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def nginx_or_say() -> str | None:
    """nginx's path; or None, after saying on stderr how to install it."""
    binary = nginx_binary()
    if binary is None:
        print("nginx is missing: apt-get install -y nginx-light", file=sys.stderr)
    return binary


def install_nginx() -> str:
    """``apt-get install -y nginx-light`` (``nginx`` if that fails), after ``apt-get update``; returns the binary."""
    if os.geteuid() != 0:
        raise RuntimeError("installing nginx needs root (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600)
    for package in NGINX_PACKAGES:
        result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", package], env=env, timeout=600)
        if result.returncode == 0 and nginx_binary():
            break
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError(f"apt-get could not install any of {', '.join(NGINX_PACKAGES)}")
    # Debian's package starts a system nginx on port 80; it is not ours and not needed. Leave it alone.
    return binary


NGINX_CONF = """\
# Written by bench/receivers.py: a loopback HTTPS webhook that answers 200 to everything.
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    {access_log}
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_max_body_size 10m;
    client_body_buffer_size 1m;
    default_type application/json;

    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;

        location = /nginx_status {{
            stub_status;
        }}
        location / {{
            add_header {header} {account} always;
            return 200 '{{}}';
        }}
    }}
}}
"""


@contextmanager
def nginx_receiver(
    binary: str, ca: BenchCA, account_id: str, workdir: Path, *, log_batch_ids: bool = False
) -> Iterator[Receiver]:
    """nginx on a free loopback port with a config written into ``workdir``; stopped (QUIT, then TERM) at the end.

    Access logging is off, unless ``log_batch_ids``: then each request's time, method, batch id header and status
    go to ``access.log`` in ``workdir`` (a diagnostic: it costs nginx a little).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            access_log=(
                "log_format ids '$msec $request_method $http_x_pointcast_batch_id $status';\n"
                f"    access_log {workdir}/access.log ids buffer=256k flush=1s;"
                if log_batch_ids
                else "access_log off;"
            ),
            dir=workdir,
            port=port,
            cert=ca.cert_path,
            key=ca.key_path,
            header=ACCOUNT_HEADER,
            account=account_id,
        )
    )
    log = workdir / "nginx.out"
    check = subprocess.run(
        [binary, "-t", "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if check.returncode != 0:
        raise RuntimeError(f"nginx rejected {conf}:\n{check.stderr}")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"https://127.0.0.1:{port}"
    try:
        wait_https_head(base + HOOK_PATH, process, ca, 30.0, workdir / "error.log")
        access = workdir / "access.log" if log_batch_ids else None
        yield Receiver("nginx", base + HOOK_PATH, process, base + "/nginx_status", ca, access)
    finally:
        stop_process(process, signal.SIGQUIT)  # graceful; TERM/KILL follow if it hangs


# --------------------------------------------------------------------------------------------------------------
# The slow receiver


class SlowApp:
    """ASGI app: HEAD -> 200 with the account header; POST -> read the body, sleep ``delay``, 200 ``{}``."""

    def __init__(self, account_id: str, delay: float) -> None:
        self.account = account_id.encode()
        self.delay = delay
        self.posts = 0
        self.bytes = 0
        self.inflight = 0  # POSTs being answered right now
        self.area = 0.0  # integral of ``inflight`` over time (request-seconds): mean concurrency over a window
        self.changed = time.monotonic()

    def _track(self, delta: int) -> None:
        now = time.monotonic()
        self.area += self.inflight * (now - self.changed)
        self.inflight += delta
        self.changed = now

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[..., Any]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"{}"
        if scope["method"] == "GET" and scope["path"] == "/stats":
            self._track(0)
            body = orjson.dumps(
                {"posts": self.posts, "bytes": self.bytes, "inflight": self.inflight, "area": self.area}
            )
        elif scope["method"] == "POST":
            self.posts += 1
            self.bytes += size
            self._track(+1)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self._track(-1)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (ACCOUNT_HEADER.lower().encode(), self.account),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


@contextmanager
def slow_receiver(ca: BenchCA, account_id: str, delay: float, workdir: Path) -> Iterator[Receiver]:
    """The slow receiver in its own process (uvicorn, TLS with the bench CA's certificate)."""
    port = free_port()
    log = workdir / "slow-receiver.log"
    command = [sys.executable, "-m", "bench.receivers", "--port", str(port), "--delay", str(delay)]
    command += ["--cert", str(ca.cert_path), "--key", str(ca.key_path), "--account", account_id]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1]
        )
    base = f"https://127.0.0.1:{port}"
    try:
        wait_https_head(base + HOOK_PATH, process, ca, 30.0, log)
        yield Receiver("slow", base + HOOK_PATH, process, base + "/stats", ca)
    finally:
        stop_process(process)


def main(argv: list[str] | None = None) -> int:
    """Run the slow receiver (used by ``slow_receiver``)."""
    parser = argparse.ArgumentParser(description="the slow HTTPS webhook receiver of bench/webhook_campaign.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--account", required=True)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        SlowApp(args.account, args.delay),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        backlog=2048,
        timeout_keep_alive=60,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real ``pointcast serve`` subprocess on a loopback port, and the clients users point at it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
from botocore.config import Config

KEY_ID, SECRET = "AKIDPOINTCASTTEST", "pointcast-test-secret"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server; ``stop()``/``start()`` restart it on the same store and port."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        self.log_path = self.data_dir / f"server-{int(time.time() * 1000)}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "pointcast"), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pointcast serve exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/pointcast/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pointcast serve did not answer within {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def pinpoint(self, **kwargs: Any) -> Any:
        return client("pinpoint", self.url, **kwargs)

    def lambda_(self, **kwargs: Any) -> Any:
        return client("lambda", self.url, **kwargs)

    def cli(self, *args: str, check: bool = True) -> Any:
        """Run ``aws pinpoint ...`` (awscli from PyPI) against this server; returns the parsed JSON output."""
        env = {**cli_env(), "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
        result = subprocess.run(
            [str(BIN / "aws"), *args, "--endpoint-url", self.url, "--region", REGION, "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        if not check:
            return result
        return json.loads(result.stdout) if result.stdout.strip() else None


def client(service: str, url: str, *, key: str = KEY_ID, secret: str = SECRET, retries: int = 0) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": retries + 1, "mode": "standard"}),  # no hidden retry of a 500
    )


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POINTCAST_"))}
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_MAX_ATTEMPTS"] = "1"
    return env


def server_env(database_url: str | None, ca_bundle: Path | None, **extra: str) -> dict[str, str]:
    env = cli_env()
    env.update(
        {
            "POINTCAST_CREDENTIALS": f"{KEY_ID}:{SECRET}",
            "POINTCAST_ACCOUNT_ID": ACCOUNT_ID,
            "POINTCAST_REGION": REGION,
            "POINTCAST_WEBHOOK_CHECK_TIMEOUT": "2",
            "POINTCAST_LOG_LEVEL": "warning",
            "POINTCAST_REMOTE_LAMBDA": "false",  # tests never reach AWS; the remote path is tested with a second server
        }
    )
    if database_url:
        env["POINTCAST_DATABASE_URL"] = database_url
    if ca_bundle:
        env["POINTCAST_CA_BUNDLE"] = str(ca_bundle)
    env.update(extra)
    return env


class PostgresSchema:
    """A fresh schema in the test database per server, so runs never see each other's rows."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.name = f"pc_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{self.name}"')

    @property
    def url(self) -> str:
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        with psycopg.connect(self.base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')

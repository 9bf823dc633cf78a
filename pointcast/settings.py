"""One settings object for the whole service; every field is also a ``POINTCAST_*`` environment variable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Built once at the edge (CLI, test) and passed down; nothing reads env at import."""

    model_config = SettingsConfigDict(env_prefix="POINTCAST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8787, ge=1, le=65535)  # (not 0: functions and Code.Location are given this port)
    advertised_url: str | None = None  # how functions and clients reach this server (default: from host and port)
    data_dir: Path = Path("pointcast-data")
    database_url: str | None = None
    account_id: str = "000000000000"
    region: str = "us-east-1"
    credentials: str | None = None
    allow_any_credentials: bool = False
    ca_bundle: str | None = None
    webhook_check_timeout: float = Field(5.0, gt=0)
    max_clock_skew_seconds: int = Field(900, ge=1)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    # glibc malloc arenas (0: glibc's default). 2 keeps a 1M-endpoint campaign under 300 MB; 0 is ~12% less CPU
    # per ingested endpoint (docs/benchmarks.md).
    malloc_arenas: int = Field(2, ge=0, le=64)
    # The campaign engine
    engine_enabled: bool = True
    scheduler_interval: float = Field(1.0, gt=0)
    manual_clock: bool = False  # tests move time with POST /pointcast/clock
    delivery_concurrency: int = Field(32, ge=1, le=1024)
    # Plan a run past its first 5,000 endpoints in a child process (pointcast.engine.planner), off the event loop's
    # interpreter lock; false plans on a thread of the server.
    planning_process: bool = True
    delivery_attempts: int = Field(5, ge=1, le=20)
    delivery_backoff_base: float = Field(0.5, ge=0)
    delivery_backoff_cap: float = Field(30.0, ge=0)
    delivery_timeout: float = Field(10.0, gt=0)
    # The client of webhook deliveries and WebUrl hooks: "curl" (libcurl through pycurl, 0.54-0.67 of aiohttp's
    # CPU per POST; docs/benchmarks.md), "aiohttp", or "auto" (curl when pycurl imports).
    delivery_client: Literal["auto", "curl", "aiohttp"] = "auto"
    # The circuit breaker per destination (channels/webhook/breaker.py): this many retryable failures in a row open
    # it (0: no breaker) for a cool-down that starts here and doubles up to delivery_backoff_cap; batches wait
    # without spending attempts, until the destination has been down for delivery_outage_limit seconds.
    delivery_breaker_failures: int = Field(10, ge=0, le=10_000)
    delivery_breaker_cooldown: float = Field(1.0, gt=0)
    delivery_outage_limit: float = Field(300.0, ge=0)
    # Functions: the worker pool, hooks, and functions that live in AWS Lambda
    function_max_workers: int = Field(8, ge=1, le=512)  # worker processes in all
    function_concurrency: int = Field(4, ge=1, le=512)  # concurrent invocations of one function
    function_idle_seconds: float = Field(300.0, gt=0)  # an idle worker ends after this long
    # An Invoke (the Lambda API) waits this long for a worker of the function, then answers 429 TooManyRequests,
    # as Lambda answers a call past the function's concurrency (campaigns' calls wait their turn)
    invoke_queue_seconds: float = Field(10.0, ge=0, le=900)
    # Event invocations (the Lambda API's) waiting or running at once; past it an Event Invoke is answered 429
    function_event_queue: int = Field(1000, ge=1, le=100_000)
    # Invocation records kept (the newest; each keeps up to 4 KB of its log): older ones are deleted each minute
    function_records: int = Field(100_000, ge=1_000)
    # How a Python worker talks to the pool: "pipe" (awslambdaric's client over two pipes, the fast path) or
    # "runtime-api" (awslambdaric as shipped, over the Lambda Runtime API on 127.0.0.1); Node.js: always the API.
    function_transport: Literal["pipe", "runtime-api"] = "pipe"
    # Node.js workers: AWS's aws-lambda-ric ("auto": if `pointcast functions install-node-ric` installed it, else
    # pointcast's bootstrap.js; "bootstrap": always bootstrap.js; or the path of an install).
    node_ric: str = "auto"
    # Linux: function workers in the SCHED_BATCH class, so handing one an event does not preempt the server's event
    # loop (filter phase of bench/webhook_campaign.py: 8% faster on 2 cores; docs/benchmarks.md)
    function_batch_scheduling: bool = True
    function_attempts: int = Field(3, ge=1, le=10)  # a channel/hook invocation that fails is tried this often
    hook_timeout: float = Field(15.0, gt=0)  # seed 003: a FILTER hook that takes longer fails the batch
    remote_lambda: bool = True  # invoke functions pointcast does not host in AWS Lambda
    remote_lambda_endpoint_url: str | None = None
    remote_lambda_access_key_id: str | None = None
    remote_lambda_secret_access_key: str | None = None
    remote_lambda_timeout: float = Field(30.0, gt=0)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Absolute once, here: a function's LAMBDA_TASK_ROOT (its code, under the data dir) is always absolute in
        Lambda, and a worker runs with that directory as its working directory, where a relative one is wrong."""
        return value.expanduser().absolute()

    @field_validator("account_id")
    @classmethod
    def _twelve_digits(cls, value: str) -> str:
        if not re.fullmatch(r"\d{12}", value):
            raise ValueError("POINTCAST_ACCOUNT_ID must be 12 digits")
        return value

    @field_validator("region")
    @classmethod
    def _a_region_name(cls, value: str) -> str:
        # It goes into every ARN, and into the host names and SigV4 scopes clients derive from it
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", value):
            raise ValueError(f"POINTCAST_REGION must be a region name such as us-east-1 (got {value!r})")
        return value

    def public_url(self) -> str:
        """The URL functions' boto3 clients (AWS_ENDPOINT_URL) and code downloads use to reach this server."""
        if self.advertised_url:
            return self.advertised_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else "[::1]" if self.host == "::" else self.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}"

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: the given one (PostgreSQL URLs get the psycopg 3 driver) or SQLite in the data dir."""
        if self.database_url:
            url = self.database_url
            for prefix in ("postgres://", "postgresql://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{(self.data_dir / 'pointcast.sqlite3').resolve()}"

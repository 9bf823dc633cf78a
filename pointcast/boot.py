"""Building the running service from Settings: store, credentials, TLS trust, the ASGI app."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

from fastapi import FastAPI

from pointcast.aws.sigv4 import SigV4Verifier, parse_credentials
from pointcast.channels.webhook.verify import make_ssl_context
from pointcast.context import Context
from pointcast.engine.clock import Clock
from pointcast.functions.runtime import node_ric
from pointcast.server import create_app
from pointcast.settings import Settings
from pointcast.store import Database

log = logging.getLogger("pointcast")
CREDENTIALS_FILE = "credentials.json"
M_ARENA_MAX = -8  # glibc's mallopt parameter number


def load_credentials(settings: Settings) -> tuple[dict[str, str], bool]:
    """Keys from POINTCAST_CREDENTIALS, else from the data dir, else a new pair stored there.

    Returns the keys and whether a pair was just created (so ``serve`` can say how to export it).
    """
    private_data_dir(settings.data_dir)
    if settings.credentials:
        return parse_credentials(settings.credentials), False
    path = settings.data_dir / CREDENTIALS_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        return {stored["aws_access_key_id"]: stored["aws_secret_access_key"]}, False
    akid = "PC" + secrets.token_hex(9).upper()
    secret = secrets.token_urlsafe(30)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even at first
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"aws_access_key_id": akid, "aws_secret_access_key": secret}, indent=2))
    return {akid: secret}, True


def private_data_dir(data_dir: Path) -> None:
    """Make the data dir for the owner only when it is new: it holds the store (webhook secrets, functions'
    environments), the credentials and the functions' code. An existing one keeps its modes (it may be a directory
    the user chose to share); what pointcast keeps there is made private one by one (the SQLite file, the code and
    worker directories), and a warning names a directory others can enter."""
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True)
    elif data_dir.stat().st_mode & 0o077:
        log.warning("the data dir %s is open to other users (mode %o); pointcast's files in it are not",
                    data_dir, data_dir.stat().st_mode & 0o777)  # fmt: skip


def build(settings: Settings, keys: dict[str, str]) -> FastAPI:
    # Node.js workers' client, resolved once: a POINTCAST_NODE_RIC that names no client (or one this node cannot
    # load) stops the start here, saying why.
    node = shutil.which("node")
    ric = node_ric.resolve(settings.node_ric, node)
    db = Database(settings.resolved_database_url())
    db.migrate()
    ctx = Context(
        settings=settings,
        db=db,
        ssl_context=make_ssl_context(settings.ca_bundle),
        clock=Clock(manual=settings.manual_clock),
        credentials=next(iter(keys.items()), ("pointcast", "pointcast")),
    )
    verifier = SigV4Verifier(
        keys, max_skew_seconds=settings.max_clock_skew_seconds, allow_any=settings.allow_any_credentials
    )
    app = create_app(ctx, verifier, node, ric)
    tune_gc()
    return app


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas before threads start (as MALLOC_ARENA_MAX does).

    Each worker thread otherwise gets an arena of its own that is rarely given back: bench/webhook_campaign.py
    measured a 1,000,000-endpoint run peaking at 330 MB with the default and 218 MB with two arenas, at the same
    speed, while ingest cost 74 instead of 65 µs of server CPU per endpoint (POINTCAST_MALLOC_ARENAS=0 keeps glibc's
    default). Not glibc (or not Linux): nothing to do.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


def tune_gc() -> None:
    """Move start-up objects out of the collector's sight and collect young objects less often.

    Each API request allocates many short-lived containers (a 100-endpoint batch is thousands of dicts); with
    CPython's default thresholds the cyclic collector ran on nearly every request, about 40% of server time in
    bench/ingest.py's profile. Reference counting still frees everything that is not in a cycle.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def credentials_path(settings: Settings) -> Path:
    return settings.data_dir / CREDENTIALS_FILE

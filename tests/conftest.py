"""Fixtures: a real server per store backend (SQLite always, PostgreSQL when configured), a test CA."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.support.campaigns import Receiver
from tests.support.functions import ensure
from tests.support.server import PostgresSchema, Server, server_env
from tests.support.tls import TestCA

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("POINTCAST_TEST_DATABASE_URL")


def need_service(reason: str) -> None:
    """In CI a missing service is a failure; elsewhere the test skips and says why."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def postgres_url() -> str:
    if not PG_URL:
        need_service("POINTCAST_TEST_DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    try:
        with psycopg.connect(str(PG_URL), connect_timeout=3):
            pass
    except psycopg.Error as exc:
        need_service(f"PostgreSQL at POINTCAST_TEST_DATABASE_URL is not reachable: {exc}")
    return str(PG_URL)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """The test CA every server trusts (POINTCAST_CA_BUNDLE) and every TLSReceiver presents."""
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def receiver(test_ca: TestCA) -> Iterator[Receiver]:
    """A webhook receiver on loopback, TLS with the test CA, that keeps every POST (tests.support.campaigns). Modules
    that test the bare TLS receiver (tests.support.tls.TLSReceiver) define their own."""
    with Receiver(test_ca) as rx:
        yield rx


@pytest.fixture(scope="session")
def ca_bundle(test_ca: TestCA) -> Path:
    return test_ca.ca_path


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_server(
    backend: str, directory: Path, ca_bundle: Path | None, **extra: str
) -> tuple[Server, PostgresSchema | None]:
    schema = PostgresSchema(postgres_url()) if backend == "postgres" else None
    server = Server(directory, server_env(schema.url if schema else None, ca_bundle, **extra))
    return server, schema


@contextmanager
def running_server(backend: str, directory: Path, ca_bundle: Path | None, **extra: str) -> Iterator[Server]:
    """A started server on its own store (a fresh schema on PostgreSQL), stopped and dropped afterwards."""
    srv, schema = make_server(backend, directory, ca_bundle, **extra)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if schema:
            schema.drop()


@pytest.fixture(scope="session")
def server(backend: str, ca_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per backend for the whole session; tests isolate themselves by creating their own app."""
    with running_server(backend, tmp_path_factory.mktemp(f"server-{backend}"), ca_bundle) as srv:
        yield srv


@pytest.fixture
def pinpoint(server: Server):  # type: ignore[no-untyped-def]
    return server.pinpoint()


@pytest.fixture
def lam(server: Server):  # type: ignore[no-untyped-def]
    return server.lambda_()


@pytest.fixture
def stock_functions(lam) -> None:  # type: ignore[no-untyped-def]
    """The functions that campaign requests in API tests name ("x", "channel", "filter-fn"), allowed for every app."""
    for name in ("x", "channel", "filter-fn"):
        ensure(lam, name)


@pytest.fixture
def app_id(pinpoint) -> str:  # type: ignore[no-untyped-def]
    return str(pinpoint.create_app(CreateApplicationRequest={"Name": "test"})["ApplicationResponse"]["Id"])

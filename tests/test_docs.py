"""The documents that describe the API stay true to the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from pointcast.api import build_apis
from pointcast.apidoc import api_table
from pointcast.aws.openapi import openapi_document
from tests.support.server import Server

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_openapi_in_repo_matches_the_code(server: Server) -> None:
    generated = openapi_document(build_apis())
    assert json.loads((DOCS / "openapi.json").read_text()) == generated, "run: pointcast openapi > docs/openapi.json"
    served = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert served == generated
    operations = {op["operationId"] for path in generated["paths"].values() for op in path.values()}
    assert operations == {name for api in build_apis() for name in api.handlers}


def test_api_table_is_generated_from_the_code() -> None:
    assert (DOCS / "api.md").read_text() == api_table(), "run: pointcast api-table > docs/api.md"


def test_api_table_matches_the_handlers() -> None:
    handlers = {name for api in build_apis() for name in api.handlers}
    rows = re.findall(r"^\| (\w+) \| `[^`]+` \| (supported|partial|not yet) \|", (DOCS / "api.md").read_text(), re.M)
    assert rows, "docs/api.md has no operations table"
    served = {op for op, status in rows if status in ("supported", "partial")}
    assert served == handlers

#!/usr/bin/env python3
"""The two commands: ``python3 dev.py demo`` and ``python3 dev.py test``.

Each creates a virtual environment in .venv (once), installs pointcast into it (again whenever pyproject.toml
changes), then runs the demo or the checks and tests. Needs nothing but Python 3.11+.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*args: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT, env=env)


def ensure_env(extra: str) -> None:
    if sys.version_info[:2] < (3, 11):  # noqa: UP036 - dev.py itself must run on an older Python to say this
        sys.exit(f"pointcast needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()
    stamp = VENV / ".pointcast-installed"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"installing pointcast{extra} into .venv ...", flush=True)
    quiet = ["-q", "--disable-pip-version-check"]
    if run(PY, "-m", "pip", "install", *quiet, "--upgrade", "pip") != 0:
        sys.exit("pip could not upgrade itself")
    if run(PY, "-m", "pip", "install", *quiet, "-e", f".{extra}") != 0:
        sys.exit("installing pointcast failed (see pip's output above)")
    stamp.write_text(digest)


def ensure_node_ric() -> None:
    """AWS's Node.js runtime client (npm aws-lambda-ric), which the Node.js function tests run under: built once
    into .venv/node-ric. Needs node and npm; as root, the Debian packages its build needs come with it."""
    if not (shutil.which("node") and shutil.which("npm")):
        print("node/npm not found: the Node.js function tests will skip (and fail under CI=true)", file=sys.stderr)
        return
    args = ["functions", "install-node-ric", "--if-missing"]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        args.append("--install-build-tools")
    if run(BIN / "pointcast", *args) != 0:
        print("aws-lambda-ric is not installed: its tests will skip (and fail under CI=true)", file=sys.stderr)


def demo() -> int:
    ensure_env("")
    return run(BIN / "pointcast", "demo")


def test(args: list[str]) -> int:
    ensure_env("[test]")
    ensure_node_ric()
    for check in (
        ["ruff", "check", "pointcast", "tests", "bench", "dev.py"],
        ["ruff", "format", "--check", "pointcast", "tests", "bench", "dev.py"],
    ):
        if run(BIN / check[0], *check[1:]) != 0:
            print(f"{' '.join(check)} failed", file=sys.stderr)
            return 1
    return run(BIN / "pytest", *(args or ["-q"]))


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "demo":
        return demo()
    if command == "test":
        return test(sys.argv[2:])
    print("usage: python3 dev.py demo | python3 dev.py test [pytest args]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

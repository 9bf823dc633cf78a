"""AWS's runtime interface client for Node.js (npm ``aws-lambda-ric``): where pointcast finds it, and installing it.

Node.js workers run AWS's own client when it is installed, as Python workers run ``awslambdaric``; it speaks the
Lambda Runtime API that each worker's listener serves. npm builds its native part (AWS's C++ runtime client and
curl) on install, which needs a C++ compiler, make, cmake and the GNU autotools, so it is not a dependency of the
Python package: ``pointcast functions install-node-ric`` installs it, and where it is not installed Node.js
workers run pointcast's ``bootstrap.js``, which speaks the same API (docs/contract.md).

``POINTCAST_NODE_RIC`` chooses: ``auto`` (the default: the installed client if there is one, else bootstrap.js),
``bootstrap`` (always bootstrap.js), or the path of an install (its prefix, or the package directory itself).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("pointcast.functions")
PACKAGE = "aws-lambda-ric"
VERSION = "3.3.0"  # the release these docs and tests were checked with
AUTO, BOOTSTRAP = "auto", "bootstrap"
# What building it runs (command -> the Debian package that has it).
BUILD_TOOLS = {
    "c++": "g++",
    "make": "make",
    "cmake": "cmake",
    "autoreconf": "autoconf",
    "aclocal": "automake",
    "libtoolize": "libtool",
}


class NodeRicError(Exception):
    """The client cannot be found where the setting says, or cannot be installed."""


def default_prefix() -> Path:
    """Where ``install`` puts it and ``auto`` looks: inside the virtual environment pointcast runs in, else the
    user's cache directory."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "node-ric"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pointcast" / "node-ric"


def package_dir(path: Path) -> Path | None:
    """The built package at ``path`` (an install prefix or the package directory), or None if it is not there."""
    for candidate in (path, path / "node_modules" / PACKAGE):
        if (candidate / "bin" / "index.mjs").is_file() and (candidate / "dist" / "rapid-client.node").is_file():
            return candidate
    return None


def resolve(setting: str, node: str | None = None, auto_prefix: Path | None = None) -> Path | None:
    """The package directory Node.js workers run, or None for bootstrap.js.

    With ``node``, the client must also load in it (its native part is built for one Node.js version): under
    ``auto`` one that does not is passed over with a warning; a path that holds no client that loads raises
    NodeRicError. ``auto_prefix`` replaces ``default_prefix()`` where ``auto`` looks.
    """
    if setting == BOOTSTRAP:
        return None
    if setting == AUTO:
        found = package_dir(auto_prefix or default_prefix())
        problem = check(found, node) if found is not None and node else None
        if problem:
            log.warning(
                "%s in %s does not load in %s (%s); Node.js functions run under bootstrap.js until "
                "'pointcast functions install-node-ric' builds it again",
                PACKAGE,
                found,
                node,
                problem,
            )
            return None
        return found
    found = package_dir(Path(setting).expanduser())
    if found is None:
        raise NodeRicError(
            f"POINTCAST_NODE_RIC={setting}: no built {PACKAGE} there (bin/index.mjs and dist/rapid-client.node); "
            f"install it with 'pointcast functions install-node-ric --prefix {setting}', or set it to "
            f"'{AUTO}' or '{BOOTSTRAP}'"
        )
    problem = check(found, node) if node else None
    if problem:
        raise NodeRicError(
            f"POINTCAST_NODE_RIC={setting}: {node} cannot load {PACKAGE}'s native part ({problem}); build it again "
            f"with 'pointcast functions install-node-ric --prefix {setting}'"
        )
    return found


@functools.lru_cache(maxsize=16)
def check(package: Path, node: str) -> str | None:
    """None if ``node`` loads the client's native part (AWS's C++ client, built for one Node.js version), else the
    error it gives. Asked once per process (the server resolves the setting as it starts)."""
    native = package / "dist" / "rapid-client.node"
    env = {"PATH": os.environ.get("PATH", ""), "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}  # read as it loads
    try:
        done = subprocess.run(
            [node, "-e", "require(process.argv[1])", str(native)], env=env, capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return next((line for line in lines if "Error" in line), lines[-1] if lines else f"exit {done.returncode}")


def describe(package: Path | None) -> str:
    """What Node.js workers run, for the health endpoint: ``aws-lambda-ric <version>`` or ``bootstrap.js``."""
    if package is None:
        return "bootstrap.js"
    try:
        version = json.loads((package / "package.json").read_text()).get("version", "?")
    except (OSError, ValueError):
        version = "?"
    return f"{PACKAGE} {version}"


def entry_point(package: Path) -> Path:
    """AWS's own command (``aws-lambda-ric <handler>``, run in the function's directory)."""
    return package / "bin" / "index.mjs"


def missing_tools() -> dict[str, str]:
    """The commands installing needs that are not on PATH, each with the Debian package that has it."""
    needed = {"node": "nodejs", "npm": "npm", **BUILD_TOOLS}
    return {command: package for command, package in needed.items() if shutil.which(command) is None}


def install(prefix: Path, version: str = VERSION) -> Path:
    """``npm install`` the client into ``prefix`` (its native part is built there); returns the package directory.

    The prefix gets a package.json naming the one dependency, and allowing its install scripts (they build the
    native part; npm warns about, and will later refuse, scripts a project has not allowed).
    """
    missing = missing_tools()
    if missing:
        raise NodeRicError(
            f"building {PACKAGE} needs {', '.join(sorted(missing))} on PATH "
            f"(Debian packages: {' '.join(sorted(set(missing.values())))})"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": "pointcast-node-ric",
        "private": True,
        "description": "AWS's Node.js runtime interface client, for pointcast's Node.js function workers",
        "dependencies": {PACKAGE: version},
        "allowScripts": {PACKAGE: True},
    }
    (prefix / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    npm = shutil.which("npm") or "npm"
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix)], cwd=prefix, check=False)
    found = package_dir(prefix)
    if done.returncode != 0 or found is None:
        raise NodeRicError(f"npm could not install {PACKAGE}@{version} into {prefix} (see npm's output above)")
    return found

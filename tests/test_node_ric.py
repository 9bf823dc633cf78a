"""Finding and installing AWS's Node.js runtime interface client (the pool tests run functions under it)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pointcast.functions.runtime import node_ric
from tests.conftest import need_service
from tests.support.server import BIN, free_port


def fake_package(root: Path, *, native: bool = True) -> Path:
    """The files ``package_dir`` looks for, in an install prefix's node_modules."""
    package = root / "node_modules" / node_ric.PACKAGE
    (package / "bin").mkdir(parents=True)
    (package / "dist").mkdir()
    (package / "bin" / "index.mjs").write_text("// entry\n")
    (package / "package.json").write_text(json.dumps({"name": node_ric.PACKAGE, "version": "9.8.7"}))
    if native:
        (package / "dist" / "rapid-client.node").write_bytes(b"\x7fELF")
    return package


def test_resolve(tmp_path: Path) -> None:
    package = fake_package(tmp_path / "prefix")
    half_built = fake_package(tmp_path / "no-native", native=False)
    assert node_ric.resolve(node_ric.BOOTSTRAP) is None
    assert node_ric.resolve(str(tmp_path / "prefix")) == package  # the install prefix
    assert node_ric.resolve(str(package)) == package  # or the package itself
    assert node_ric.describe(package) == "aws-lambda-ric 9.8.7" and node_ric.describe(None) == "bootstrap.js"
    for wrong in (tmp_path / "empty", tmp_path / "no-native", half_built):
        with pytest.raises(node_ric.NodeRicError, match=r"POINTCAST_NODE_RIC=.*no built aws-lambda-ric there"):
            node_ric.resolve(str(wrong))
    # auto: the environment pointcast runs in (the tests run in the checkout's virtual environment)
    assert sys.prefix != sys.base_prefix and node_ric.default_prefix() == Path(sys.prefix) / "node-ric"
    assert node_ric.resolve(node_ric.AUTO) == node_ric.package_dir(Path(sys.prefix) / "node-ric")


NODE = shutil.which("node")


def test_a_client_that_does_not_load_in_this_node(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Its native part is built for one Node.js version: auto passes such an install over, a path refuses it."""
    if NODE is None:
        need_service("Node.js ('node') is not on PATH")
    assert NODE
    broken = fake_package(tmp_path / "prefix")  # rapid-client.node is not a shared object
    with caplog.at_level(logging.WARNING, logger="pointcast.functions"):
        assert node_ric.resolve(node_ric.AUTO, NODE, auto_prefix=tmp_path / "prefix") is None
    assert "does not load in" in caplog.text and "bootstrap.js" in caplog.text
    with pytest.raises(node_ric.NodeRicError, match=r"cannot load aws-lambda-ric's native part \(.*Error"):
        node_ric.resolve(str(broken), NODE)
    assert node_ric.resolve(str(broken)) == broken  # without node nothing is run, so nothing is checked
    installed = node_ric.package_dir(node_ric.default_prefix())
    if installed is not None:  # the real one (python3 dev.py test builds it) loads
        assert node_ric.check(installed, NODE) is None
        assert node_ric.resolve(node_ric.AUTO, NODE) == installed


def test_install_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to build with
    with pytest.raises(node_ric.NodeRicError) as caught:
        node_ric.install(tmp_path / "prefix")
    message = str(caught.value)
    assert "needs" in message and "autoreconf" in message and "npm" in message
    assert "Debian packages: autoconf automake" in message and "libtool" in message
    assert not (tmp_path / "prefix").exists()


def test_serve_refuses_a_path_without_the_client(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "pointcast"), "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())],
        env={"PATH": str(BIN), "POINTCAST_NODE_RIC": str(tmp_path / "nothing-here"), "COLUMNS": "500"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot start" in done.stderr and "no built aws-lambda-ric there" in done.stderr
    assert "install-node-ric" in done.stderr


def test_serve_refuses_a_client_this_node_cannot_load(tmp_path: Path) -> None:
    if NODE is None:
        need_service("Node.js ('node') is not on PATH")
    fake_package(tmp_path / "prefix")
    done = subprocess.run(
        [str(BIN / "pointcast"), "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())],
        env={
            "PATH": f"{BIN}:{Path(str(NODE)).parent}",
            "POINTCAST_NODE_RIC": str(tmp_path / "prefix"),
            "COLUMNS": "500",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot start" in done.stderr and "cannot load aws-lambda-ric's native part" in done.stderr


def test_install_if_missing_leaves_an_install_alone(tmp_path: Path) -> None:
    package = fake_package(tmp_path / "prefix")
    done = subprocess.run(
        [str(BIN / "pointcast"), "functions", "install-node-ric", "--prefix", str(tmp_path / "prefix"), "--if-missing"],
        env={"PATH": str(BIN)},  # no npm: nothing may be run
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"aws-lambda-ric is installed: {package}"


def test_install_if_missing_builds_again_what_this_node_cannot_load(tmp_path: Path) -> None:
    if NODE is None:
        need_service("Node.js ('node') is not on PATH")
    fake_package(tmp_path / "prefix")  # its native part does not load
    only_node = tmp_path / "bin"
    only_node.mkdir()
    (only_node / "node").symlink_to(str(NODE))
    done = subprocess.run(
        [str(BIN / "pointcast"), "functions", "install-node-ric", "--prefix", str(tmp_path / "prefix"), "--if-missing"],
        env={"PATH": f"{BIN}:{only_node}", "COLUMNS": "500"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1  # it tried to build it again, and says what that needs
    assert "installing aws-lambda-ric" in done.stderr and "needs" in done.stderr and "npm" in done.stderr

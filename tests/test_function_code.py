"""Function code on disk: zip entries stay inside the package, and the unpacked code is read-only and restored
when a handler has changed it (pointcast.functions.code)."""

from __future__ import annotations

import base64
import io
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pointcast.functions.code import decode_zip, remove_tree, sweep, unpack
from pointcast.functions.errors import InvalidParameterValue
from tests.support.campaigns import wait_for
from tests.support.functions import ROLE, deploy, zip_code
from tests.support.server import Server

EXEC = 0o100755 << 16
PLAIN = 0o100644 << 16


def make_zip(entries: list[tuple[str, str, int]]) -> bytes:
    """A zip with entries named exactly as given (``zipfile`` keeps a leading ``/`` and ``..`` parts)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text, attr in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = attr
            archive.writestr(info, text)
    return buffer.getvalue()


def modes(directory: Path) -> dict[str, int]:
    return {
        str(path.relative_to(directory)): stat.S_IMODE(path.lstat().st_mode) for path in sorted(directory.rglob("*"))
    }


# -- (1) entries outside the package ----------------------------------------------------------------------------


def test_zip_entries_outside_the_package_are_refused(lam: Any, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    victim.chmod(0o644)
    index = ("index.py", "def handler(e, c):\n    return 1\n", PLAIN)
    name = f"outside-{uuid.uuid4().hex[:8]}"
    for bad in (str(victim), "../../x", "lib/../../x"):
        data = make_zip([index, (bad, "#!/bin/sh\n", EXEC)])
        with pytest.raises(ClientError) as refused:
            lam.create_function(
                FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="index.handler", Code={"ZipFile": data}
            )
        assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert f"the entry '{bad}' lies outside the package" in refused.value.response["Error"]["Message"]
    deploy(lam, name, allow=None)
    with pytest.raises(ClientError) as refused:
        lam.update_function_code(FunctionName=name, ZipFile=make_zip([index, ("/etc/x", "", EXEC)]))
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == {"ok": True}
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    lam.delete_function(FunctionName=name)


def test_a_zip_with_a_file_and_a_directory_of_one_name_is_refused() -> None:
    data = make_zip([("a", "x", PLAIN), ("a/b", "y", PLAIN)])
    with pytest.raises(InvalidParameterValue, match="'a' is both a file and a directory"):
        decode_zip(base64.b64encode(data).decode())


@pytest.mark.parametrize("entry", ["a" * 256, "lib/" + "/".join(["d" * 200] * 16) + "/x.py"])
def test_a_zip_with_a_name_no_file_system_keeps_is_refused(entry: str) -> None:
    """Refused when deployed, not accepted and then failing every invocation with ENAMETOOLONG."""
    data = make_zip([("index.py", "", PLAIN), (entry, "", PLAIN)])
    with pytest.raises(InvalidParameterValue, match="has a name longer than 255 bytes or a path longer than 3072"):
        decode_zip(base64.b64encode(data).decode())
    assert decode_zip(base64.b64encode(make_zip([("a" * 255, "", PLAIN)])).decode())


def test_unpack_keeps_stored_entries_inside_the_code_directory(tmp_path: Path) -> None:
    """A zip stored before uploads were checked: its entries are unpacked inside, and nothing outside changes."""
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("not yours")
    victim.chmod(0o644)
    data = make_zip(
        [
            ("index.py", "print(1)\n", PLAIN),
            (str(victim), "mine\n", EXEC),
            ("../../x", "up\n", EXEC),
            ("bin/run.sh", "#!/bin/sh\n", EXEC),
        ]
    )
    target = unpack(tmp_path / "functions", "fn", data)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644 and victim.read_text() == "not yours"
    assert not (tmp_path / "x").exists() and not (tmp_path / "functions" / "x").exists()
    inside = str(victim.relative_to("/"))
    assert (target / inside).read_text() == "mine\n"
    assert (target / "x").read_text() == "up\n"
    found = modes(target)
    assert found["index.py"] == 0o444
    assert found["bin/run.sh"] == found["x"] == found[inside] == 0o555
    assert {mode for path, mode in found.items() if (target / path).is_dir()} == {0o555}
    assert stat.S_IMODE(target.stat().st_mode) == 0o555


# -- (2) read-only code, restored when changed --------------------------------------------------------------------

SABOTEUR = dedent(
    """
    import os, stat
    HERE = os.path.dirname(os.path.abspath(__file__))

    def handler(event, context):
        mine = os.path.join(HERE, "index.py")
        answer = {"file": stat.S_IMODE(os.stat(mine).st_mode), "dir": stat.S_IMODE(os.stat(HERE).st_mode)}
        scratch = "/tmp/pointcast-scratch-" + context.aws_request_id
        with open(scratch, "w") as f:
            f.write("ok")
        os.remove(scratch)
        if event.get("sabotage"):
            try:
                os.remove(mine)
                answer["removed"] = True
            except PermissionError:
                answer["removed"] = False
        return answer
    """
)


def test_a_handler_cannot_break_its_code_for_good(lam: Any) -> None:
    """Read-only code (a process running as root may still remove it: then a redeploy of the same zip restores
    it, as in Lambda, instead of reusing the damaged directory)."""
    name = f"saboteur-{uuid.uuid4().hex[:8]}"

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
        payload = json.loads(answer["Payload"].read())
        assert "FunctionError" not in answer, payload
        assert isinstance(payload, dict)
        return payload

    deploy(lam, name, SABOTEUR, allow=None)
    assert invoke({}) == {"file": 0o444, "dir": 0o555}
    assert invoke({"sabotage": True})["removed"] is (os.geteuid() == 0)
    lam.delete_function(FunctionName=name)
    deploy(lam, name, SABOTEUR, allow=None)
    assert invoke({}) == {"file": 0o444, "dir": 0o555}
    lam.delete_function(FunctionName=name)


def _writable(path: Path) -> None:
    """Undo the read-only modes, as a process running as root does not need to."""
    for item in [path, *path.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)


@pytest.mark.parametrize("damage", ["removed", "changed", "added", "mode", "emptied-dir"])
def test_unpack_restores_a_changed_code_directory(tmp_path: Path, damage: str) -> None:
    data = zip_code({"index.py": "def handler(e, c):\n    return 1\n", "lib/util.py": "X = 1\n"})
    first = unpack(tmp_path, "fn", data)
    before = modes(first)
    _writable(first)
    if damage == "removed":
        (first / "index.py").unlink()
    elif damage == "changed":
        (first / "lib" / "util.py").write_text("X = 2\n")  # same size
    elif damage == "added":
        (first / "boto3.py").write_text("raise ImportError\n")
    elif damage == "emptied-dir":
        shutil.rmtree(first / "lib")
    for item in [first, *first.rglob("*")]:  # read-only again, except for "mode"
        if damage != "mode":
            item.chmod(0o555 if item.is_dir() else 0o444)
    again = unpack(tmp_path, "fn", data)
    assert again == first
    assert modes(again) == before
    assert (again / "index.py").read_text() == "def handler(e, c):\n    return 1\n"
    assert (again / "lib" / "util.py").read_text() == "X = 1\n"
    assert [p.name for p in (tmp_path / "fn").iterdir()] == [first.name]  # the damaged copy is gone


UNPRIVILEGED = dedent(
    """
    import os, sys
    from pathlib import Path
    from pointcast.functions.code import remove_tree, unpack, zip_files

    root = Path(sys.argv[1])
    code = unpack(root, "fn", zip_files({"index.py": "x = 1\\n", "lib/a.py": ""}))
    refused = []
    for attempt in (
        lambda: (code / "index.py").unlink(),
        lambda: open(code / "index.py", "a"),
        lambda: (code / "new.py").write_text(""),
        lambda: (code / "lib" / "a.py").unlink(),
    ):
        try:
            attempt()
        except PermissionError:
            refused.append(True)
        else:
            refused.append(False)
    remove_tree(root / "fn")
    print(refused, (root / "fn").exists())
    """
)


def test_the_code_is_read_only_and_still_removable_for_its_owner() -> None:
    """Permission bits hold for a process that is not root (the test drops to ``nobody`` when it runs as root)."""
    scratch = Path(tempfile.mkdtemp(prefix="pointcast-code-"))
    scratch.chmod(0o777)
    try:
        done = subprocess.run(
            [sys.executable, "-c", UNPRIVILEGED, str(scratch)],
            user=65534 if os.geteuid() == 0 else None,
            cwd=scratch,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["[True,", "True,", "True,", "True]", "False"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- (3) code no longer used is removed ---------------------------------------------------------------------------


def test_sweep_removes_only_code_no_function_has_no_worker_runs_and_nothing_touched_since(tmp_path: Path) -> None:
    root, pycache = tmp_path / "functions", tmp_path / "pycache"
    paths = {key: root / fn / key for fn, key in [("f", "cur"), ("f", "old"), ("f", "new"), ("f", "busy"), ("g", "x")]}
    for path in paths.values():
        path.mkdir(parents=True)
        (pycache / path.relative_to(path.anchor)).mkdir(parents=True)
        os.utime(path, (1000, 1000))
    os.utime(paths["new"])  # unpacked (or reused) after the sweep began: a revision written meanwhile
    (root / "f" / ".cur-staging").mkdir()  # an unpack in progress
    removed = sweep(root, {"f": "cur"}, {paths["busy"]}, since=time.time() - 5, pycache=pycache)
    assert sorted(removed) == sorted([paths["old"], paths["x"]])
    assert sorted(p.name for p in (root / "f").iterdir()) == [".cur-staging", "busy", "cur", "new"]
    assert not (root / "g").exists() and not (pycache / paths["old"].relative_to(paths["old"].anchor)).exists()
    assert (pycache / paths["cur"].relative_to(paths["cur"].anchor)).is_dir()


def test_code_of_an_old_revision_or_a_deleted_function_leaves_the_disk(lam: Any, server: Server) -> None:
    name = f"sweep-{uuid.uuid4().hex[:8]}"
    deploy(lam, name, "def handler(e, c):\n    return 'v1'\n", allow=None)
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == "v1"
    home = server.data_dir / "functions" / name
    (first,) = home.iterdir()
    lam.update_function_code(FunctionName=name, ZipFile=zip_code({"index.py": "def handler(e, c):\n    return 2\n"}))
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == 2
    wait_for(lambda: not first.exists(), 20, "the first revision's code to be removed")
    assert len(list(home.iterdir())) == 1
    lam.delete_function(FunctionName=name)
    wait_for(lambda: not home.exists(), 20, "the deleted function's code to be removed")


# -- (4) symbolic links --------------------------------------------------------------------------------------------

LINK = (stat.S_IFLNK | 0o777) << 16


def test_symbolic_links_are_unpacked_as_links_and_checked_like_files(tmp_path: Path) -> None:
    """A native library's version links (``libx.so.1 -> libx.so.1.2``) must stay links; one pointing outside the
    package is refused."""
    data = make_zip(
        [
            ("index.py", "import os\n", PLAIN),
            ("lib/libx.so.1.2", "ELF", PLAIN),
            ("lib/libx.so.1", "libx.so.1.2", LINK),
            ("vendor", "lib", LINK),  # a link to a directory
            ("lib/up", "../index.py", LINK),
        ]
    )
    decode_zip(base64.b64encode(data).decode())
    code = unpack(tmp_path, "links", data)
    assert (
        os.readlink(code / "lib" / "libx.so.1") == "libx.so.1.2"
        and (code / "vendor" / "libx.so.1").read_text() == "ELF"
    )
    assert (code / "lib" / "up").read_text() == "import os\n"
    inode = code.stat().st_ino
    assert unpack(tmp_path, "links", data).stat().st_ino == inode  # intact: reused as it is
    code.chmod(0o755)  # damaged (a handler running as root): unpacked again
    remove_tree(code / "lib")
    (code / "vendor").unlink()
    os.symlink("/etc", code / "vendor")
    code.chmod(0o555)
    again = unpack(tmp_path, "links", data)
    assert os.readlink(again / "vendor") == "lib" and os.readlink(again / "lib" / "libx.so.1") == "libx.so.1.2"
    for target in ("/etc/passwd", "../x", "lib/../../x", "", "vendor/..", "d/" * 2500 + "x"):
        bad = make_zip([("index.py", "", PLAIN), ("lib/a", "", PLAIN), ("vendor", "lib", LINK), ("l", target, LINK)])
        with pytest.raises(InvalidParameterValue, match="the symbolic link 'l' points outside the package"):
            decode_zip(base64.b64encode(bad).decode())


def test_a_link_entry_is_not_inflated_before_the_limits_are_checked() -> None:
    """A link's target is small: an entry marked as a link that declares more is refused by its declared size, not
    inflated (1 GiB of zeros compress to ~1 MB)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("index.py"), "")
        info = zipfile.ZipInfo("bomb")
        info.external_attr, info.compress_type = LINK, zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as sink:
            for _ in range(1024):
                sink.write(bytes(1 << 20))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidParameterValue, match="longer than 4095 bytes"):
        decode_zip(base64.b64encode(buffer.getvalue()).decode())
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 1024  # KiB: not the 1 GiB

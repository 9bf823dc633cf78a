"""The README's first command runs the demo; this runs the same ``pointcast demo`` end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pointcast.demo import DEMO_MARKER, NotADemoDir, prepare_data_dir


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pointcast"), "demo", "--data-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "create_campaign" in result.stdout and "HEAD check" in result.stdout
    assert "must begin with https://" in result.stdout
    assert "the campaign ran: COMPLETED" in result.stdout
    assert "Demo finished" in result.stdout


def test_demo_refuses_a_directory_it_did_not_make_and_deletes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "pointcast.sqlite3").write_bytes(b"a real store")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pointcast"), "demo", "--data-dir", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "demo refused" in result.stdout and "was not made by pointcast demo" in result.stdout
    assert sorted(p.name for p in store.iterdir()) == ["pointcast.sqlite3"]
    assert (store / "pointcast.sqlite3").read_bytes() == b"a real store"


def test_the_demo_data_dir_is_new_empty_or_an_earlier_demos(tmp_path: Path) -> None:
    new = tmp_path / "new" / "demo"
    prepare_data_dir(new)
    assert [p.name for p in new.iterdir()] == [DEMO_MARKER]
    (new / "pointcast.sqlite3").write_bytes(b"the first run's store")
    (new / "functions").mkdir()
    (new / "functions" / "index.py").write_text("code")
    (new / "functions" / "index.py").chmod(0o444)
    (new / "functions").chmod(0o555)  # functions' code is unpacked read-only
    prepare_data_dir(new)  # a second run starts afresh
    assert [p.name for p in new.iterdir()] == [DEMO_MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_data_dir(empty)
    assert [p.name for p in empty.iterdir()] == [DEMO_MARKER]
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    with pytest.raises(NotADemoDir):
        prepare_data_dir(a_file)
    assert a_file.read_text() == "not a directory"

"""The README's first command runs the demo; this runs the same ``pointcast demo`` end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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

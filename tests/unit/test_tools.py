"""Quiet tools: `make help` lists every target; the layer build leaves no console scripts (bin/)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_make_help_lists_every_target() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert targets and targets <= listed, sorted(targets - listed)


def test_layer_has_no_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "layers"))
    try:
        import build
    finally:
        sys.path.remove(str(ROOT / "layers"))
    monkeypatch.setattr(build, "OUT", tmp_path / "build")
    monkeypatch.setattr(build, "SITE", tmp_path / "build" / "python")
    monkeypatch.setattr(build, "python312", lambda: ["true"])
    seen: list[bool] = []

    def fake_run(cmd: list[str], **_: Any) -> Any:
        if "pip" in cmd:  # pip --target writes console scripts to bin/; the second install warns if it exists
            seen.append((build.SITE / "bin").exists())
            (build.SITE / "bin").mkdir(parents=True, exist_ok=True)
            (build.SITE / "bin" / "stepgraph").write_text("#!python\n")
            (build.SITE / "pkg").mkdir(exist_ok=True)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(build.subprocess, "run", fake_run)
    build.main()
    assert seen == [False, False]
    assert not (build.SITE / "bin").exists() and (build.SITE / "pkg").is_dir()

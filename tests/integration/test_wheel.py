"""The package works installed as a wheel, outside the checkout: the SQL, the state machine definition,
the example items and the handlers the local stack runs all ship inside it (importlib.resources).

The wheel goes into a fresh virtualenv that sees the shared environment's dependencies through a path
file (fast and offline: `pip install --no-deps`); the checkout is not on its path, and the commands
run from another directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "usage_sample"
# What the package build reads: pyproject, README, src/ and the top-level folders its data links to.
SOURCES = ("pyproject.toml", "README.md", "src", "statemachine", "athena", "lambdas", "examples")


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"  # build from a copy: the build leaves build/ and egg-info behind
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(
                path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ]
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("stepgraph-*.whl")
    venv = tmp / "venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).returncode == 0
    site = Path(
        run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    # The shared environment's packages, behind the venv's own site-packages (where the wheel goes).
    (site / "zz_shared_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The caller's PYTHONPATH (a checkout's src/) would make pip see the package as installed already.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    inst = run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        env=clean,
    )
    assert inst.returncode == 0, inst.stderr[-3000:]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "STEPGRAPH_", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return venv, env


def test_the_installed_package_is_the_wheel_not_the_checkout(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    code = "import stepgraph, stepgraph.resources as r; print(stepgraph.__file__); print(r.statemachine_text()[:1])"
    out = run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    path, first = out.stdout.split()
    assert Path(path).is_relative_to(venv) and first == "{"


def test_usage_report_from_the_wheel(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    venv, env = installed
    out = run(
        [str(venv / "bin" / "stepgraph"), "usage", "report", "--source", str(FIXTURE), "--format", "json"],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)["queries"]
    assert {"spend_by_day_model", "failures_by_status", "free_tier_daily"} <= set(report)
    assert sum(r["requests"] for r in report["spend_by_day_model"]) == 3


def test_demo_from_the_wheel_in_another_directory(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    out = run(
        [
            str(venv / "bin" / "stepgraph"),
            "demo",
            "--items",
            "4",
            "--faults",
            "none",
            "--out",
            str(tmp_path / "demo"),
        ],
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    results = list((tmp_path / "demo").rglob("results/**/*.json")) or list(
        (tmp_path / "demo").rglob("*.json")
    )
    assert results, out.stdout[-2000:]

"""Build the Lambda dependency layer without Docker: manylinux wheels for Python 3.12 / x86_64,
minus what the runtime already has, stripped, and byte-compiled for Python 3.12.

    python layers/build.py            # -> layers/build/python (the asset the CDK app uses)
                                      #    and layers/build-duckdb/python (usage compaction's DuckDB)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "layers" / "build"
SITE = OUT / "python"
DUCKDB_SITE = ROOT / "layers" / "build-duckdb" / "python"
# The Lambda runtime ships boto3/botocore; aws-xray-sdk pulls them in again (32 MB).
DROP = ("boto3", "botocore", "s3transfer", "jmespath", "stepgraph/local")


def python312() -> list[str]:
    for cmd in (["python3.12"], ["env", "PYENV_VERSION=3.12.1", "python3.12"]):
        try:
            if (
                subprocess.run(
                    [*cmd, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"], capture_output=True
                ).returncode
                == 0
            ):
                return cmd
        except FileNotFoundError:
            continue
    sys.exit(
        "error: Python 3.12 is needed to byte-compile the layer for the Lambda runtime (install python3.12)"
    )


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    py312 = python312()
    shutil.rmtree(OUT, ignore_errors=True)
    SITE.mkdir(parents=True)
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--target",
        str(SITE),
        "--platform",
        "manylinux2014_x86_64",
        "--implementation",
        "cp",
        "--python-version",
        "3.12",
        "--only-binary=:all:",
    ]
    subprocess.run([*pip, "-r", str(ROOT / "layers" / "requirements.txt")], check=True)
    # Console scripts (bin/) are of no use in Lambda; gone before the second install, pip does not
    # warn that python/bin exists.
    shutil.rmtree(SITE / "bin", ignore_errors=True)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True)
    shutil.rmtree(SITE / "bin", ignore_errors=True)
    naive = size_mb(SITE)
    for name in DROP:
        for p in SITE.glob(name + "*"):
            shutil.rmtree(p, ignore_errors=True)
    for p in list(SITE.rglob("__pycache__")) + list(SITE.rglob("tests")):
        shutil.rmtree(p, ignore_errors=True)
    for p in SITE.rglob("*.pyi"):
        p.unlink()
    if shutil.which("strip"):
        for so in SITE.rglob("*.so"):
            subprocess.run(["strip", "--strip-unneeded", str(so)], capture_output=True)
    # /opt is read-only in Lambda, so bytecode must be built here by the runtime's Python. Legacy
    # layout (`-b`: module.pyc beside module.py), then the dependencies' sources go: 57 MB instead of
    # ~90 MB and the fastest import; stepgraph keeps its sources for readable tracebacks.
    subprocess.run([*py312, "-m", "compileall", "-q", "-b", "-j", "0", str(SITE)], check=True)
    for src in SITE.rglob("*.py"):
        if not src.is_relative_to(SITE / "stepgraph") and src.with_suffix(".pyc").exists():
            src.unlink()
    for pyc in (SITE / "stepgraph").rglob("*.pyc"):
        pyc.unlink()  # keep sources (and compile them to __pycache__ for the runtime below)
    subprocess.run([*py312, "-m", "compileall", "-q", "-j", "0", str(SITE / "stepgraph")], check=True)
    print(f"layer: {SITE} — {size_mb(SITE):.1f} MB unzipped (naive install {naive:.1f} MB)")


def build_duckdb() -> None:
    """The usage-compaction function's own layer: DuckDB alone (graph-step's layer stays small)."""
    py312 = python312()
    shutil.rmtree(DUCKDB_SITE, ignore_errors=True)
    DUCKDB_SITE.mkdir(parents=True)
    pip = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(DUCKDB_SITE),
        "--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.12",
        "--only-binary=:all:",
    ]  # fmt: skip
    subprocess.run([*pip, "-r", str(ROOT / "layers" / "requirements-duckdb.txt")], check=True)
    shutil.rmtree(DUCKDB_SITE / "bin", ignore_errors=True)
    if shutil.which("strip"):
        for so in DUCKDB_SITE.rglob("*.so"):
            subprocess.run(["strip", "--strip-unneeded", str(so)], capture_output=True)
    subprocess.run([*py312, "-m", "compileall", "-q", "-j", "0", str(DUCKDB_SITE)], check=True)
    print(f"layer: {DUCKDB_SITE} — {size_mb(DUCKDB_SITE):.1f} MB unzipped")


if __name__ == "__main__":
    main()
    build_duckdb()

"""Benchmark: the Lambda dependency layer's size, and cold imports from it with its own bytecode.

Builds the layer as `make layer` does (layers/build.py: manylinux wheels for Python 3.12, stripped,
byte-compiled), then imports from it in fresh Python 3.12 processes, as the Lambda runtime does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from stepgraph import resources
from stepgraph.local.bench.report import BenchResult, print_result
from stepgraph.local.bench.step import cold_imports_s, lambda_env

_BARE = "import langgraph.graph, langchain_openai"
# The handler module, then what its first step imports (deferred so the init phase stays short).
_HANDLER = "import handler, langgraph.graph, langchain_openai, stepgraph.graphs.document_pipeline"
# ... and the first AWS client that step builds (boto3 is in the runtime, but importing it and loading a
# service model still costs start-up time).
_WITH_CLIENT = _HANDLER + "; import boto3; boto3.client('s3')"


def _layer_script() -> Path:
    return resources.checkout_root() / "layers" / "build.py"


def _build() -> tuple[Path, float, float]:
    root = resources.checkout_root()
    out = subprocess.run(
        [sys.executable, str(_layer_script())], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"([\d.]+) MB unzipped \(naive install ([\d.]+) MB\)", out)
    if not match:
        raise RuntimeError(f"layers/build.py printed no size line: {out[-500:]}")
    return root / "layers" / "build" / "python", float(match[1]), float(match[2])


def _zipped_mb(site: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        archive = shutil.make_archive(str(Path(tmp) / "layer"), "zip", site.parent, site.name)
        return Path(archive).stat().st_size / 1e6


def _runtime_dir(tmp: Path) -> Path:
    """What the Lambda runtime adds to the layer: boto3 and its dependencies (links to this venv's)."""
    import sysconfig

    purelib = Path(sysconfig.get_paths()["purelib"])
    runtime = tmp / "runtime"
    runtime.mkdir()
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py"):
        if (purelib / name).exists():
            (runtime / name).symlink_to(purelib / name)
    return runtime


def _imports_s(python: list[str], site: Path, runtime: Path, codes: list[str], runs: int) -> list[float]:
    handler_dir = resources.data_path("lambdas", "graph_step")
    # The function's code, the layer, the runtime's boto3: what /var/task, /opt/python and the runtime hold.
    path = f"{handler_dir}:{site}:{runtime}"
    env = lambda_env(
        str(handler_dir), {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": path, "PYTHONNOUSERSITE": "1"}
    )
    return cold_imports_s(codes, runs, python=[*python, "-S"], env=env)


def run(import_runs: int = 9) -> BenchResult:
    import importlib.util

    # layers/build.py by path: a `build` package on sys.path (PyPA's) must not stand in for it.
    spec = importlib.util.spec_from_file_location("stepgraph_layer_build", _layer_script())
    assert spec is not None and spec.loader is not None
    layer_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layer_build)
    python312 = layer_build.python312
    site, unzipped, naive = _build()
    python = python312()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = _runtime_dir(Path(tmp))
        bare, handler, with_client = _imports_s(
            python, site, runtime, [_BARE, _HANDLER, _WITH_CLIENT], import_runs
        )
    result = BenchResult("layer", "stepgraph bench layer")
    result.add(
        "layer unzipped", unzipped, "MB", baseline=naive, baseline_label="naive pip install", goal="<= 60"
    )
    result.add("layer zipped", _zipped_mb(site), "MB", goal="<= 50 (Lambda's zipped limit)")
    result.add(
        "cold import from the layer: handler + its first step's imports",
        handler,
        "s",
        baseline=bare,
        baseline_label=f"`{_BARE}` from the same layer",
        goal="<= 1.25x baseline",
    )
    result.add(
        "... plus boto3 and the step's first S3 client",
        with_client,
        "s",
        baseline=bare,
        baseline_label=f"`{_BARE}` from the same layer",
    )
    result.notes.append(
        "Python 3.12 with only the layer and lambdas/graph_step on the path (`-S`, no site-packages), the "
        "layer's own bytecode, boto3 from this machine as the runtime provides it, the environment variables "
        "Lambda sets (LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME, ...) and the stack's; medians of fresh processes "
        "less the interpreter's start-up."
    )
    return result


def cli(import_runs: int = typer.Option(9, min=1, help="Fresh processes per import measurement")) -> None:
    print_result(run(import_runs))

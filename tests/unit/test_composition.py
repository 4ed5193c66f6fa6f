"""One composition root per function: library code reads no environment, tests build dependencies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stepgraph.config import settings_from
from stepgraph.errors import ConfigError
from stepgraph.runtime.deps import Container, build_dependencies

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "src" / "stepgraph"
# Entry points and dev tooling may read the environment; the library proper may not.
ALLOWED = ("cli/", "config.py", "local/")
ENV_READS = re.compile(r"\bos\.environ\b|\bos\.getenv\b|\bgetenv\(|\bget_settings\b|\bload_settings\(")
CACHE_RESETS = re.compile(r"\.cache_clear\(|clients\.reset\(|\._limiters\b|\._keyrings\b|_loaded\.clear\(")


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_library_module_reads_the_environment() -> None:
    offenders = [
        f"{path.relative_to(LIBRARY)}:{n}: {line.strip()}"
        for path in _sources(LIBRARY)
        if not str(path.relative_to(LIBRARY)).startswith(ALLOWED)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ENV_READS.search(line) and not line.lstrip().startswith(("#", ">>>", "..."))
    ]
    assert offenders == []


def test_no_test_resets_a_module_cache() -> None:
    me = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _sources(ROOT / "tests")
        if path != me
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if CACHE_RESETS.search(line)
    ]
    assert offenders == []


class CountingClients:
    def __init__(self) -> None:
        self.made: list[tuple[str, str | None]] = []

    def __call__(self, service: str, endpoint_url: str | None = None) -> object:
        self.made.append((service, endpoint_url))
        return object()


def test_dependencies_come_from_the_settings_and_environment_given() -> None:
    clients = CountingClients()
    env = {
        "STEPGRAPH_ENDPOINT_URL": "http://127.0.0.1:9",
        "STEPGRAPH_OPENROUTER_BASE_URL": "http://sim/api/v1",
        "STEPGRAPH_GRAPHS": '{"mine": "pkg.mod:build"}',
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    deps = build_dependencies(settings_from(env), env, client=clients)
    assert deps.table.providers["openrouter"].base_url == "http://sim/api/v1"
    assert deps.graphs["mine"] == "pkg.mod:build"
    assert deps.metrics("g").enabled is False
    assert deps.budget_guard() is None
    assert clients.made == []  # clients are made on first use only
    assert deps.s3 is deps.s3 and clients.made == [("s3", "http://127.0.0.1:9")]
    make = deps.limiter_factory(None, "openrouter")
    spec = deps.table.providers["openrouter"]
    free = make("openrouter", spec, "openai/gpt-oss-120b:free")
    assert free is make(
        "openrouter", spec, "openai/gpt-oss-120b:free"
    )  # kept across a warm container's calls
    assert free is not None and free.key == "openrouter:main"  # the account's free day counter
    # The paid variant carries no platform request cap (only the budget guard): no limiter at all.
    assert make("openrouter", spec, "openai/gpt-oss-120b") is None
    assert ("dynamodb", "http://127.0.0.1:9") in clients.made


def test_a_container_keeps_its_dependencies_until_its_configuration_changes() -> None:
    container = Container(client=CountingClients())
    env = {"STEPGRAPH_BUCKET": "bucket-a", "_X_AMZN_TRACE_ID": "Root=1"}
    first = container.get(env)
    assert container.get({**env, "_X_AMZN_TRACE_ID": "Root=2"}) is first  # per-invocation noise
    changed = container.get({**env, "STEPGRAPH_BUCKET": "bucket-b"})
    assert changed is not first and changed.settings.bucket == "bucket-b"
    with pytest.raises(ConfigError, match="STEPGRAPH_TIME_SCALE"):
        container.get({"STEPGRAPH_TIME_SCALE": "fast"})


def test_settings_come_only_from_the_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPGRAPH_BUCKET", "from-the-process")
    assert settings_from({}).bucket != "from-the-process"
    assert settings_from({"STEPGRAPH_BUCKET": "given"}).bucket == "given"

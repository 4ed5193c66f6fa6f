"""docs/architecture.md names only modules and functions that exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_stepgraph_name_in_the_architecture_page_exists() -> None:
    names = set(re.findall(r"\bstepgraph(?:\.[A-Za-z_][A-Za-z0-9_]*)+", DOC.read_text()))
    assert len(names) > 10
    assert sorted(n for n in names if not _resolves(n)) == []

"""The report's DuckDB connection keeps memory bounded and spills to its temporary directory."""

from __future__ import annotations

from pathlib import Path

from stepgraph.usage.duck import Limits, connect


def test_connection_bounds_threads_memory_and_order(tmp_path: Path) -> None:
    con = connect(tmp_path, limits=Limits(threads=2, memory_limit="256MB"))
    setting = lambda name: con.execute(f"SELECT current_setting('{name}')").fetchone()[0]  # noqa: E731
    assert setting("threads") == 2
    assert setting("preserve_insertion_order") is False
    assert setting("memory_limit").replace(" ", "") in ("256.0MB", "244.1MiB", "256MB")
    assert Path(setting("temp_directory")) == tmp_path / "spill"
    # Work larger than the limit completes: the file database and the spill directory take the rest.
    con.execute("CREATE TABLE t AS SELECT range AS i, repeat('x', 64) AS s FROM range(3000000)")
    assert con.execute("SELECT count(*) FROM (SELECT * FROM t ORDER BY s DESC, i)").fetchone()[0] == 3000000
    assert (tmp_path / "usage.duckdb").is_file()

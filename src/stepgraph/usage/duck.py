"""DuckDB connections for the usage lake: bounded memory, and S3 read in place through httpfs.

DuckDB's defaults (every core a thread, insertion order kept) made `read_json` over 10,000 small
objects peak at 3.5 GB; these settings keep a report of a million records well under 1 GB and spill
what does not fit to a temporary directory. The httpfs extension comes from PyPI
(`duckdb-extension-httpfs`, built for the exact DuckDB version) and is loaded from the package's
files, so nothing is downloaded at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stepgraph.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    threads: int = 2
    memory_limit: str = "512MB"


def connect(temp_dir: Path, *, limits: Limits | None = None, database: Path | None = None) -> Any:
    """A connection whose tables and spills live under `temp_dir` (a file database, not RAM)."""
    import duckdb

    limits = limits or Limits()
    con = duckdb.connect(str(database or temp_dir / "usage.duckdb"))
    con.execute(f"SET threads = {int(limits.threads)}")
    con.execute(f"SET memory_limit = '{limits.memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET temp_directory = '{temp_dir / 'spill'}'")
    return con


def httpfs_path() -> Path:
    import duckdb

    try:
        from importlib.resources import files

        root = files("duckdb_extension_httpfs")
    except ModuleNotFoundError:
        raise ConfigError(
            "reading s3:// needs the DuckDB httpfs extension package",
            hint=f"pip install 'duckdb=={duckdb.__version__}' 'duckdb-extension-httpfs=={duckdb.__version__}'",
        ) from None
    path = Path(str(root)) / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not path.is_file():
        raise ConfigError(
            f"duckdb-extension-httpfs has no build for DuckDB {duckdb.__version__}",
            hint="install the duckdb-extension-httpfs version equal to duckdb's",
        )
    return path


def attach_s3(con: Any, s3_client: Any) -> None:
    """Load httpfs and give DuckDB the boto3 client's credentials, region and endpoint."""
    con.execute(f"LOAD '{httpfs_path()}'")
    creds = s3_client._request_signer._credentials
    frozen = creds.get_frozen_credentials() if creds is not None else None
    params: dict[str, str] = {"REGION": s3_client.meta.region_name or "us-east-1"}
    if frozen is not None:
        params["KEY_ID"], params["SECRET"] = frozen.access_key, frozen.secret_key
        if frozen.token:
            params["SESSION_TOKEN"] = frozen.token
    url = urlparse(s3_client.meta.endpoint_url)
    if url.hostname and not url.hostname.endswith("amazonaws.com"):
        # A local stand-in (moto server): path-style addressing, plain HTTP if so given.
        params["ENDPOINT"] = url.netloc
        params["URL_STYLE"] = "path"
        params["USE_SSL"] = "true" if url.scheme == "https" else "false"
    body = ", ".join(
        f"{k} {v}" if k == "USE_SSL" else f"{k} '{v.replace(chr(39), chr(39) * 2)}'"
        for k, v in params.items()
    )
    con.execute(f"CREATE OR REPLACE SECRET stepgraph_s3 (TYPE s3, {body})")

"""Test-only glue that lets the `bigquery` and `snowflake` profiles load into local emulators.

Neither emulator is mocked: dlt's BigQuery destination talks HTTP to `bqemulator` (own venv,
`make .venv-bqemulator/.installed`), and dlt's Snowflake SQL runs on `fakesnow` (DuckDB
behind the Snowflake connector, patched in-process). Their gaps, and the glue for each:

- bqemulator accepts no real Google credentials, so the BigQuery factory below fills in
  anonymous ones with a project id (dlt's config cannot hold such an object), and has
  dlt add one column per ALTER TABLE, the only form the emulator parses.
- fakesnow cannot run dlt's PUT/COPY file loading, so the Snowflake factory loads with
  INSERT statements (as dlt does for Postgres) and strips the quotes fakesnow cannot parse
  from the schema it receives on connect. Everything after loading (the merge, the SCD2
  and staging SQL) is dlt's own Snowflake code.
- Neither answers dlt's Arrow reads (bqemulator returns no rows, fakesnow has no
  fetch_arrow_all): the tests read rows back through DB-API (`Warehouse.read_with_arrow`).

`profiles_file` writes a copy of the built-in destinations.toml whose profile points at one of these
factories, so tests still go through `run_load(LoadRequest(destination="bigquery"))`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
BQEMULATOR = REPO / ".venv-bqemulator" / "bin" / "bqemulator"
BIGQUERY_PROJECT = "test-project"
STARTUP_SECONDS = 60.0


def in_ci() -> bool:
    """Whether we run under CI: `CI` set to anything but empty, 0, false or no (services
    set `true`, some `1`)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip locally, fail under CI: CI must never pass by skipping a warehouse."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def profiles_file(directory: Path, name: str, **overrides: str) -> Path:
    """A destinations.toml holding only profile `name`, its keys replaced by `overrides`."""
    profile = tomllib.loads((REPO / "leadrat_source" / "destinations.toml").read_text())[name] | overrides
    lines = [f"[{name}]"] + [f"{key} = {_toml_value(value)}" for key, value in profile.items()]
    path = directory / "destinations.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- BigQuery ------------------------------------------------------------------------------


@contextmanager
def bqemulator(log_file: Path) -> Iterator[str]:
    """Run bqemulator on loopback for the block; yields its REST endpoint."""
    if not BQEMULATOR.exists():
        missing(f"{BQEMULATOR} is missing: run `make .venv-bqemulator/.installed`")
    rest_port, grpc_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{rest_port}"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [str(BQEMULATOR), "start", "--rest-port", str(rest_port), "--grpc-port",
             str(grpc_port), "--project", BIGQUERY_PROJECT, "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT,
            # its uploaded load files land in TMPDIR; keep them in the test's directory
            env={**os.environ, "TMPDIR": str(log_file.parent)},
        )
        try:
            _wait_until_up(process, f"{endpoint}/bigquery/v2/projects/{BIGQUERY_PROJECT}/datasets",
                           log_file)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bqemulator exited with {process.returncode}: {log_file.read_text()}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"bqemulator did not answer {url} within {STARTUP_SECONDS:.0f}s")


def anonymous_gcp_credentials() -> Any:
    """Resolved credentials without a key: the emulator checks none, Google would refuse."""
    from dlt.common.configuration.specs.gcp_credentials import (
        GcpDefaultCredentials,
        GcpServiceAccountCredentials,
    )
    from google.auth.credentials import AnonymousCredentials

    credentials = GcpServiceAccountCredentials()
    credentials.project_id = BIGQUERY_PROJECT
    # the service-account parser only takes key files; the default one takes any Google
    # credentials object and marks the configuration resolved
    GcpDefaultCredentials.parse_native_representation(credentials, AnonymousCredentials())
    return credentials


class EmulatedBigQuery(dlt.destinations.bigquery):  # type: ignore[misc]
    """dlt's BigQuery destination with anonymous credentials (for bqemulator)."""

    # dlt drops arguments left at their defaults by reading this class's __init__ signature
    __orig_base__ = dlt.destinations.bigquery

    def __init__(self, credentials: Any = None, **kwargs: Any) -> None:
        super().__init__(credentials=credentials or anonymous_gcp_credentials(), **kwargs)

    def _raw_capabilities(self) -> Any:
        caps = super()._raw_capabilities()
        # the emulator parses one ADD COLUMN per ALTER TABLE (BigQuery takes several)
        caps.alter_add_multi_column = False
        return caps


# --- Snowflake -----------------------------------------------------------------------------


def _fakesnow_client_class() -> type[Any]:
    """SnowflakeClient loading `insert_values` files; imported late (needs the extra)."""
    import snowflake.connector as snowflake_lib
    from dlt.common.storages.load_package import ParsedLoadJobFileName
    from dlt.destinations.impl.snowflake.snowflake import SnowflakeClient
    from dlt.destinations.impl.snowflake.sql_client import SnowflakeSqlClient
    from dlt.destinations.insert_job_client import InsertValuesLoadJob

    class FakesnowSqlClient(SnowflakeSqlClient):
        def open_connection(self) -> Any:
            params = self.credentials.to_connector_params()
            params.setdefault("arrow_number_to_decimal", True)
            params["autocommit"] = True
            # fakesnow takes `"DB"."SCHEMA"` literally as a schema name
            schema = self.fully_qualified_dataset_name().replace('"', "")
            self._conn = snowflake_lib.connect(schema=schema, **params)
            return self._conn

    class FakesnowClient(SnowflakeClient):  # type: ignore[misc]
        def __init__(self, schema: Any, config: Any, capabilities: Any) -> None:
            super().__init__(schema, config, capabilities)
            self.sql_client = FakesnowSqlClient(
                self.sql_client.dataset_name, self.sql_client.staging_dataset_name,
                config.credentials, capabilities, config.query_tag,
            )

        def create_load_job(
            self, table: Any, file_path: str, load_id: str, restore: bool = False
        ) -> Any:
            if ParsedLoadJobFileName.parse(file_path).file_format == "insert_values":
                return InsertValuesLoadJob(file_path)
            return super().create_load_job(table, file_path, load_id, restore)

    return FakesnowClient


def _escape_carriage_returns(escape: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """dlt's Snowflake literal escaping, with a carriage return written as the escape `\\r`.

    dlt reads `insert_values` files back in text mode, whose universal newlines turn a raw
    CR (which Snowflake's escaping leaves in the literal) into LF: "a\\r\\nb" would load as
    "a\\nb". The `snowflake` profile loads parquet and never meets this.
    """

    def escape_literal(value: Any) -> Any:
        escaped = escape(value)
        return escaped.replace("\r", "\\r") if isinstance(escaped, str) else escaped

    return escape_literal


class FakesnowSnowflake(dlt.destinations.snowflake):  # type: ignore[misc]
    """dlt's Snowflake destination loading with INSERT statements (for fakesnow)."""

    def _raw_capabilities(self) -> Any:
        from dlt.common.data_writers.escape import escape_snowflake_literal

        caps = super()._raw_capabilities()
        caps.preferred_loader_file_format = "insert_values"
        caps.supported_loader_file_formats = ["insert_values"]
        caps.escape_literal = _escape_carriage_returns(escape_snowflake_literal)
        caps.supports_multiple_statements = False
        return caps

    @property
    def client_class(self) -> type[Any]:
        return _fakesnow_client_class()


# --- the scenario both emulated warehouses run ---------------------------------------------


def load_churn_load(warehouse: Any) -> None:
    """First load, churn, second load: the warehouse equals the sandbox after each, updates
    replaced rows in place (merge) and deleted leads stayed with `deleted_at` (soft delete)."""
    from warehouse import assert_equal_to_sandbox

    server = warehouse.server
    first = warehouse.load()
    assert first.rows["leads"] == len(server.export_leads())
    assert_equal_to_sandbox(warehouse)

    changes = server.churn(60)
    assert {"create", "update", "delete"} <= {change["kind"] for change in changes}
    warehouse.load()
    assert_equal_to_sandbox(warehouse)

    # assert_equal_to_sandbox already saw every field; name the two behaviours at stake
    rows = warehouse.rows("leads")
    assert len(rows) == len({row["id"] for row in rows}), "an updated lead was appended"
    deleted = {c["lead_id"] for c in changes if c["kind"] == "delete"}
    assert deleted and all(row["deleted_at"] is not None for row in rows if row["id"] in deleted)


def load_churn_load_hard(warehouse: Any) -> None:
    """load_churn_load with delete_mode = hard (set by the caller): the deleted leads and
    their tags are gone, `lead_tombstones` holds each deletion, and the merge conditions
    that read it run in this warehouse's SQL."""
    from warehouse import assert_equal_to_sandbox, assert_tombstones_of_deleted_leads

    warehouse.load()
    warehouse.server.churn(60)
    warehouse.load()
    assert_equal_to_sandbox(warehouse, delete_mode="hard")
    assert_tombstones_of_deleted_leads(warehouse)


def check_history(warehouse: Any, make_client: Callable[..., Any], loads: int = 3) -> None:
    """With history on (SCD2), loads with churn and new custom keys between, every lead
    re-read by the lookback: one version per change, contiguous validity."""
    from history import assert_one_version_per_change, load_with_churn

    states = load_with_churn(warehouse, make_client, loads=loads, changes=20)
    assert_one_version_per_change(warehouse, states)

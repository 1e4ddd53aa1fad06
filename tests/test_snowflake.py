"""Loads through the `snowflake` profile into fakesnow: dlt's Snowflake SQL (DDL, merge,
SCD2) on DuckDB, with INSERT statements instead of PUT/COPY (see tests/emulators.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from emulators import check_history, load_churn_load, load_churn_load_hard, missing, profiles_file
from history import history_rereading_everything


@pytest.fixture
def snowflake_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_warehouse: Callable[..., Any]
) -> Iterator[Callable[..., Any]]:
    """make_warehouse for the `snowflake` profile, on a fresh in-memory fakesnow."""
    try:
        import fakesnow
        import snowflake.connector  # noqa: F401
    except ImportError:
        missing("fakesnow or the Snowflake extra is missing: pip install -e '.[dev,snowflake]'")
    monkeypatch.setenv(
        "DESTINATION__SNOWFLAKE__CREDENTIALS", "snowflake://loader:fakesnow@local/leadrat_db"
    )
    monkeypatch.setenv(
        "LEADRAT_DESTINATIONS_FILE",
        str(profiles_file(tmp_path, "snowflake", destination_type="emulators.FakesnowSnowflake",
                          loader_file_format="insert_values")),
    )
    with fakesnow.patch():

        def create(server: Any) -> Any:
            warehouse = make_warehouse(server, destination="snowflake", dataset="leadrat")
            warehouse.read_with_arrow = False  # fakesnow's cursor has no fetch_arrow_all
            return warehouse

        yield create


def test_load_churn_load_equals_sandbox(
    make_sandbox: Callable[..., Any], snowflake_warehouse: Callable[..., Any]
) -> None:
    load_churn_load(snowflake_warehouse(make_sandbox(leads=300, seed=37, rate_limit=0)))


def test_hard_deletes_keep_tombstones_and_their_merge_conditions_run(
    make_sandbox: Callable[..., Any], snowflake_warehouse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__LEADRAT__DELETE_MODE", "hard")
    load_churn_load_hard(snowflake_warehouse(make_sandbox(leads=200, seed=29, rate_limit=0)))


def test_history_mode_keeps_one_version_per_change(
    make_sandbox: Callable[..., Any], snowflake_warehouse: Callable[..., Any],
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    history_rereading_everything(monkeypatch)
    check_history(snowflake_warehouse(make_sandbox(leads=100, seed=41, rate_limit=0)), make_client)

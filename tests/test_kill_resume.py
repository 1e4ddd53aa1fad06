"""A load killed at any point (extract, normalize, load) is completed by the next run, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from warehouse import Warehouse, assert_equal_to_sandbox

from leadrat_source.sandbox import Sandbox

PIPELINE = "leadrat_test"


def start_load(server: Sandbox, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))},
        "SOURCES__LEADRAT__BASE_URL": server.base_url,
        "SOURCES__LEADRAT__API_KEY": server.read_key,
        "SOURCES__LEADRAT__LEADS_PER_BATCH": "500",
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "leadrat_source.cli", "load", "--pipeline-name", PIPELINE],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stderr.log").open("ab"),
    )


def has_package(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def kill_when(process: subprocess.Popen[bytes], condition: Callable[[], bool]) -> bool:
    """SIGKILL the process as soon as `condition` holds; False if it finished first."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait()
    return False


@pytest.mark.parametrize("phase", ["extract", "normalize", "load"])
def test_killed_run_is_completed_by_the_next_run(
    phase: str, make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any],
    tmp_path: Path,
) -> None:
    server = make_sandbox(leads=4_000, seed=43, rate_limit=0)
    pipeline_dir = tmp_path / "dlt" / "pipelines" / PIPELINE
    conditions: dict[str, Callable[[], bool]] = {
        "extract": lambda: server.stats()["by_route"].get("GET /leads", 0) >= 10,
        "normalize": lambda: has_package(pipeline_dir / "normalize" / "extracted"),
        "load": lambda: has_package(pipeline_dir / "load" / "normalized"),
    }
    if phase == "extract":
        server.set_faults(latency_ms=30)
    killed = kill_when(start_load(server, tmp_path), conditions[phase])
    server.set_faults(latency_ms=0)
    assert killed, f"the load finished before reaching {phase}; nothing was tested"

    server.churn(200)
    resumed = start_load(server, tmp_path)
    assert resumed.wait(timeout=180) == 0

    warehouse: Warehouse = make_warehouse(server)
    warehouse.pipelines_dir = tmp_path / "dlt" / "pipelines"
    warehouse.pipeline_name = PIPELINE
    assert_equal_to_sandbox(warehouse)


def test_killed_again_and_again_at_random_instants_still_ends_exact(
    make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any], tmp_path: Path,
) -> None:
    import random

    server = make_sandbox(leads=4_000, seed=59, rate_limit=0)
    server.set_faults(latency_ms=5)
    instants = random.Random(59).sample([0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.2], 5)
    killed = 0
    for instant in instants:
        deadline = time.monotonic() + instant
        load = start_load(server, tmp_path)
        killed += kill_when(load, lambda deadline=deadline: time.monotonic() >= deadline)
        server.churn(40)
    assert killed >= 3, "most runs finished before their kill; nothing was tested"
    server.set_faults(latency_ms=0)
    assert start_load(server, tmp_path).wait(timeout=180) == 0

    warehouse: Warehouse = make_warehouse(server)
    warehouse.pipelines_dir = tmp_path / "dlt" / "pipelines"
    warehouse.pipeline_name = PIPELINE
    assert_equal_to_sandbox(warehouse)

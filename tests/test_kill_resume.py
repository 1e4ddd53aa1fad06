"""A load killed at any step (extract, normalize, load) is completed by the next run, exactly once.

Kills happen on observed progress, never at a wall-clock instant: when the sandbox has
been asked for the N-th list page of the run (it counts a request before its latency, so
the page is still in flight), or when a load package the run created reaches a folder of
dlt's pipeline working directory. The process is stopped (SIGSTOP) first, the step it was
in is read from that frozen state, and only then is it killed: each kill's step is known,
not guessed. The next run must load the very package the kill left (its load id appears in
`_dlt_loads`), read only what is new from the API, and leave the warehouse exact.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dlt_kills import (
    INSTANTS,
    JOB_COMMITTED,
    KILLING,
    Packages,
    completed_loads,
    kill_environment,
    packages,
)
from warehouse import Warehouse, assert_equal_to_sandbox

from leadrat_source.sandbox import Sandbox

PIPELINE = "leadrat_test"
LIST_ROUTE = "GET /leads"
#: API requests of a run beyond its list pages: pipelines, three analytics, slice edges
HANDFUL = 8
#: each API request waits this long in the sandbox: a page counted is still in flight
LATENCY_MS = 30


def start_load(server: Sandbox, tmp_path: Path, instant: str | None = None,
               **settings: str) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))},
        "SOURCES__LEADRAT__BASE_URL": server.base_url,
        "SOURCES__LEADRAT__API_KEY": server.read_key,
        "SOURCES__LEADRAT__LEADS_PER_BATCH": "500",
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        **settings,
    }
    if instant:
        env.update(kill_environment(instant))
    command = KILLING if instant else [sys.executable, "-m", "leadrat_source.cli"]
    return subprocess.Popen(
        [*command, "load", "--pipeline-name", PIPELINE],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stderr.log").open("ab"),
    )


def list_pages(server: Sandbox) -> int:
    """List pages the sandbox has been asked for so far (server-side count)."""
    return int(server.stats()["by_route"].get(LIST_ROUTE, 0))


@dataclass(frozen=True)
class KillPoint:
    """Where to kill a run: `step` is the step it must be in, `pages` (extract only) the
    list pages this run must have asked for first, `mid_load` (load only) whether some of
    the package's jobs must already be in the warehouse."""

    step: str
    pages: int = 1
    mid_load: bool = False

    def reached(self, server: Sandbox, pages_before: int, before: Packages, now: Packages) -> bool:
        """Whether the run has reached this point; only packages this run created count."""
        if self.step == "extract":
            return list_pages(server) - pages_before >= self.pages
        if self.step == "normalize":
            return bool(now.extracted - now.normalized - before.all) and now.schema_saved
        new = now.normalized - now.extracted - before.all
        return bool(new & now.with_loaded_jobs if self.mid_load else new)


def step_of(before: Packages, frozen: Packages) -> str:
    """The step a frozen run was in, from its packages (not from the kill point).

    A package both extracted and normalized is normalize committing its result (it
    deletes the extracted copy last): a step of its own, which no kill point aims at."""
    if frozen.extracted & frozen.normalized - before.all:
        return "normalize-commit"
    if frozen.normalized - before.all:
        return "load"
    if frozen.extracted - before.all and frozen.schema_saved:
        return "normalize"
    return "extract"


@dataclass(frozen=True)
class Kill:
    step: str
    #: packages the run left unfinished (to be loaded by the next run)
    left: frozenset[str]
    #: list pages the killed run asked for
    pages: int


def kill_at(server: Sandbox, tmp_path: Path, point: KillPoint) -> Kill:
    """Start a load and SIGKILL it at `point`; fails the test if the run ends before."""
    pipeline_dir = tmp_path / "dlt" / "pipelines" / PIPELINE
    before = packages(pipeline_dir)
    pages_before = list_pages(server)
    process = start_load(server, tmp_path)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if point.reached(server, pages_before, before, packages(pipeline_dir)):
            process.send_signal(signal.SIGSTOP)  # freeze it: its folders stop changing
            frozen = packages(pipeline_dir)
            process.send_signal(signal.SIGKILL)
            process.wait()
            step = step_of(before, frozen)
            assert step == point.step, f"aimed at {point}, the run was in {step}"
            return Kill(step, frozen.pending, list_pages(server) - pages_before)
        time.sleep(0.001)
    process.kill()
    process.wait()
    pytest.fail(f"the load ended (exit {process.returncode}) before reaching {point}; "
                "nothing was tested")


def resume(server: Sandbox, tmp_path: Path, **settings: str) -> int:
    """Run a load to the end; returns the list pages it asked for."""
    pages_before = list_pages(server)
    process = start_load(server, tmp_path, **settings)
    assert process.wait(timeout=180) == 0, (tmp_path / "stderr.log").read_text()[-3000:]
    return list_pages(server) - pages_before


def warehouse_of(make_warehouse: Callable[..., Any], server: Sandbox, tmp_path: Path) -> Warehouse:
    warehouse: Warehouse = make_warehouse(server)
    warehouse.pipelines_dir = tmp_path / "dlt" / "pipelines"
    warehouse.pipeline_name = PIPELINE
    return warehouse


@pytest.mark.parametrize(
    "point",
    [KillPoint("extract", pages=15),
     KillPoint("normalize"),
     KillPoint("load"), KillPoint("load", mid_load=True)],
    ids=["extract", "normalize", "load", "load-mid-way"],
)
def test_killed_run_is_completed_by_the_next_run(
    point: KillPoint, make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    leads = 4_000
    server = make_sandbox(leads=leads, seed=43, rate_limit=0)
    server.set_faults(latency_ms=LATENCY_MS)
    kill = kill_at(server, tmp_path, point)
    server.set_faults(latency_ms=0)

    changed = len({change.get("lead_id") for change in server.churn(200)})
    pages = resume(server, tmp_path)
    if point.step == "extract":
        assert not kill.left, "a run killed while extracting left a package"
        # nothing was committed: the next run reads everything, once
        assert pages <= math.ceil((leads + changed) / 100) + HANDFUL, pages
    else:
        assert len(kill.left) == 1
        assert kill.left <= completed_loads(tmp_path / "warehouse.duckdb"), (
            "the next run did not load the package the killed run left")
        # the package held the first read; the next run reads only what changed since
        assert pages <= math.ceil(changed / 100) + HANDFUL, f"{pages} pages: a re-read"
    assert_equal_to_sandbox(warehouse_of(make_warehouse, server, tmp_path))


@pytest.mark.parametrize("instant", INSTANTS)
def test_first_run_killed_at_a_commit_instant_is_completed_by_the_next_run(
    instant: str, make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The instants between two of dlt's writes, where a package is committed but the
    pipeline does not know it yet (no schema or state saved), or is committed twice: the
    next run loads that package and reads only what changed since."""
    leads = 4_000
    server = make_sandbox(leads=leads, seed=47, rate_limit=0)
    pipeline_dir = tmp_path / "dlt" / "pipelines" / PIPELINE
    process = start_load(server, tmp_path, instant)
    assert process.wait(timeout=180) == -signal.SIGKILL, (tmp_path / "stderr.log").read_text()
    left = packages(pipeline_dir).pending
    assert len(left) == 1, f"the kill left {sorted(left)}"

    changed = len({change.get("lead_id") for change in server.churn(200)})
    pages = resume(server, tmp_path)
    assert left <= completed_loads(tmp_path / "warehouse.duckdb"), (
        "the next run did not load the package the killed run left")
    assert pages <= math.ceil(changed / 100) + HANDFUL, f"{pages} pages: a re-read"
    assert_equal_to_sandbox(warehouse_of(make_warehouse, server, tmp_path))


#: every table a load writes, by the key no two of its rows may share
TABLE_KEYS = {
    "leads": ("id",), "lead_tags": ("lead_id", "tag"),
    "pipelines": ("id",), "pipeline_stages": ("pipeline_id", "id"),
    "analytics_summary": ("snapshot_date",), "analytics_sources": ("snapshot_date", "source"),
    "analytics_funnel": ("snapshot_date", "pipeline_id", "stage_id"),
}


@pytest.mark.parametrize(("table", "history"), [
    *((table, False) for table in TABLE_KEYS), ("leads", True), ("lead_tags", True)])
def test_a_load_job_killed_after_its_commit_is_run_again_without_a_row_twice(
    table: str, history: bool, make_sandbox: Callable[..., Sandbox],
    make_warehouse: Callable[..., Any], tmp_path: Path,
) -> None:
    """Killed after a load job of `table` committed its rows but before dlt recorded that:
    the next run cannot know the rows are in and runs the job again. Each table must
    still hold each row once (in history mode each current version), and the warehouse
    equal the sandbox."""
    server = make_sandbox(leads=2_000, seed=61, rate_limit=0)
    settings = {"SOURCES__LEADRAT__HISTORY": "true"} if history else {}
    process = start_load(server, tmp_path, JOB_COMMITTED + table, **settings)
    assert process.wait(timeout=180) == -signal.SIGKILL, (tmp_path / "stderr.log").read_text()
    server.churn(100)
    resume(server, tmp_path, **settings)
    warehouse = warehouse_of(make_warehouse, server, tmp_path)
    for name, key in TABLE_KEYS.items():
        keys = [tuple(row[column] for column in key) for row in warehouse.rows(name)
                if row.get("_dlt_valid_to") is None]
        assert len(keys) == len(set(keys)), f"{name}: a row is stored twice"
    assert_equal_to_sandbox(warehouse)


def test_killed_again_and_again_at_every_step_still_ends_exact(
    make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Any], tmp_path: Path,
) -> None:
    """Seeded kill points, each run killed while the previous one's package may still wait:
    every package a kill left is loaded later, and the warehouse ends exact."""
    server = make_sandbox(leads=4_000, seed=59, rate_limit=0)
    server.set_faults(latency_ms=LATENCY_MS)
    choices = [KillPoint("extract", pages=1), KillPoint("extract", pages=12),
               KillPoint("normalize"), KillPoint("load"), KillPoint("load", mid_load=True)]
    points = random.Random(59).sample(choices, len(choices))
    left: set[str] = set()
    for point in points:
        if point.step == "extract" and point.pages > 1 and left:
            point = KillPoint("extract", pages=1)  # an incremental run reads one page or so
        kill = kill_at(server, tmp_path, point)
        left |= kill.left
        server.churn(40)
    assert left, "no kill left a package to finish"
    server.set_faults(latency_ms=0)
    resume(server, tmp_path)
    loaded = completed_loads(tmp_path / "warehouse.duckdb")
    assert left <= loaded, f"packages never loaded: {sorted(left - loaded)}"
    assert_equal_to_sandbox(warehouse_of(make_warehouse, server, tmp_path))

"""Every target of the performance issue measured in one run: a table, and bench/results.json.

    python bench/bench_all.py [--full] [--output bench/results.json]

`make bench` runs the quick mode (50k and 200k leads, about 6 minutes on 2 quiet cores);
`make bench-full` (`--full`) adds 1M leads and pushes 10k scores in the reverse sync.

- Scale (one unthrottled sandbox per size, `rate_limit=0`): the fetch floor (the load's
  own concurrent scan, nothing built or loaded), our full load into a fresh DuckDB file
  with peak RSS sampled every 50 ms during the run, then an incremental run after 1% of
  the leads changed (`churn`). At the smallest size also dlt's generic `rest_api` source
  (cursor paginator, merge on id, incremental on updated_at, parquet). Ratios are taken
  between phases of the same run (the same sandbox, the same machine load).
- Quota: a sandbox whose budget binds (a short window, 200 ms latency): a backfill of
  more than 20 windows' worth of requests, then a reverse sync of changed scores under
  the same budget, then the same reverse sync again (nothing changed: 0 requests).
  Requests and 429s are the sandbox's own counts (`/_sandbox/stats`), not the client's.
- Webhooks: `bench_webhooks.measure` (durable acks/s with 64 senders, latencies).

Each load runs in a forked child, so its RSS is its own (`bench_load.in_child`); the
reverse sync runs in this process (its memory is not a target).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_webhooks
import dlt
import duckdb
import psutil
from bench_load import Env, Result, fetch_floor, in_child, ours, rest_api_baseline

from leadrat_source.client import LeadRatClient
from leadrat_source.reverse_sync import ReverseSyncRequest, run_reverse_sync
from leadrat_source.sandbox import Sandbox, SandboxConfig

RESULTS = Path(__file__).with_name("results.json")
CHURN_SHARE = 0.01
TARGETS = {"speedup_vs_rest_api": (">=", 10.0), "ratio_to_fetch_floor": ("<=", 1.5),
           "peak_rss_mb_max": ("<", 300.0), "leads_per_s_spread": ("<=", 0.20),
           "budget_share": (">=", 0.90), "rate_limited_429s": ("==", 0),
           "reverse_budget_share": (">=", 0.90), "reverse_unchanged_requests": ("==", 0),
           "webhook_acks_per_s": (">=", bench_webhooks.TARGET_ACKS_PER_SECOND)}


@dataclass(frozen=True)
class Mode:
    sizes: tuple[int, ...]
    #: the budget that binds: `limit` requests per `window` seconds, `latency_ms` each
    quota_leads: int = 40_000
    limit: int = 20
    window: float = 2.0
    latency_ms: float = 200
    reverse_rows: int = 1_000
    webhook_events: int = 10_000


MODES = {"quick": Mode(sizes=(50_000, 200_000)),
         # 10k PUTs at 10/s would take 17 minutes: the full run's budget is 2.5x larger,
         # still binding (8 reverse-sync workers at 200 ms could send 40/s), and its
         # backfill 2.5x longer, so it still spans more than 20 windows
         "full": Mode(sizes=(50_000, 200_000, 1_000_000), quota_leads=100_000,
                      reverse_rows=10_000, limit=50, webhook_events=20_000)}


def scale(size: int, workdir: Path, baseline: bool) -> dict[str, Result]:
    """Fetch floor, our load (+ incremental after 1% churn), and maybe rest_api, at `size`."""
    print(f"scale {size}: starting the sandbox ...", flush=True)
    started = time.perf_counter()
    config = SandboxConfig(leads=size, seed=7, rate_limit=0, daily_cap=None)
    with Sandbox.spawn(config) as server:
        phases = {"sandbox_start_seconds": {"seconds": time.perf_counter() - started}}
        env = Env(server.base_url, server.read_key, workdir / str(size), size)
        env.workdir.mkdir(parents=True, exist_ok=True)
        sandbox = psutil.Process(server.process.pid)

        def run(name: str, function: Callable[..., Result], *args: Any) -> None:
            """A phase in a child process, with the sandbox's CPU seconds meanwhile."""
            print(f"scale {size}: {name} ...", flush=True)
            before = sum(sandbox.cpu_times()[:2])
            phases[name] = in_child(function, env, *args)
            phases[name]["sandbox_cpu_seconds"] = sum(sandbox.cpu_times()[:2]) - before

        run("floor", fetch_floor)
        # ours: a first load, then an incremental run after 1% churn
        run("ours", ours, "ours", server.churn, None, int(size * CHURN_SHARE))
        if baseline:
            run("rest_api", rest_api_baseline)
    return phases


def budget_share(requests: int, seconds: float, mode: Mode) -> float:
    """requests / (windows elapsed x limit), windows counted continuously (no free edge)."""
    return requests / (seconds / mode.window * mode.limit)


def quota(mode: Mode, workdir: Path) -> Result:
    """A backfill and a reverse sync where the budget binds, measured on the server."""
    config = SandboxConfig(leads=mode.quota_leads, seed=11, plan="growth", rate_limit=mode.limit,
                           window_seconds=mode.window, daily_cap=None)
    result: Result = {}
    print(f"quota: sandbox {mode.quota_leads} leads, {mode.limit} requests per "
          f"{mode.window:g} s, {mode.latency_ms:g} ms latency ...", flush=True)
    with Sandbox.spawn(config) as server:
        env = Env(server.base_url, server.read_key, workdir / "quota", mode.quota_leads)
        env.workdir.mkdir(parents=True, exist_ok=True)
        server.set_faults(latency_ms=mode.latency_ms)
        server.reset_stats()
        load = in_child(ours, env, "quota")
        stats = server.stats()
        result["load"] = {**load, "server_requests": stats["requests"],
                          "server_429s": stats["rate_limited"],
                          "ideal_seconds": stats["requests"] / mode.limit * mode.window,
                          "budget_share": budget_share(stats["requests"], load["seconds"], mode)}
        print(f"quota: reverse sync of {mode.reverse_rows} changed scores ...", flush=True)
        result["reverse"] = reverse_sync(server, env, mode)
    return result


def reverse_sync(server: Any, env: Env, mode: Mode) -> Result:
    """Push `reverse_rows` changed scores, then the same rows again (nothing to send)."""
    database = env.workdir / "quota.duckdb"
    os.environ["DESTINATION__DUCKDB__CREDENTIALS"] = str(database)
    live = [lead for lead in server.export_leads() if lead["deleted_at"] is None]
    rows = [(lead["id"], (int(lead["score"] or 0) + 1) % 100) for lead in live]
    with duckdb.connect(str(database)) as connection:
        connection.execute("create schema if not exists leadrat")
        connection.execute("create or replace table leadrat.lead_scores "
                           "(lead_id varchar, score integer)")
        connection.executemany("insert into leadrat.lead_scores values (?, ?)",
                               rows[:mode.reverse_rows])
    request = ReverseSyncRequest(dataset="leadrat",
                                 pipelines_dir=str(env.workdir / "pipelines"))
    result: Result = {}
    with LeadRatClient(server.base_url, api_key=server.read_write_key, timeout=60) as client:
        # the load before spent this window: start with a fresh one, as a run of its own would
        time.sleep(mode.window)
        server.reset_stats()
        started = time.perf_counter()
        summary = run_reverse_sync(request, client=client)
        result["seconds"] = time.perf_counter() - started
        stats = server.stats()
        result.update(sent=summary.sent, confirmed=summary.confirmed,
                      server_requests=stats["requests"], server_429s=stats["rate_limited"],
                      ideal_seconds=stats["requests"] / mode.limit * mode.window,
                      budget_share=budget_share(stats["requests"], result["seconds"], mode))
        server.reset_stats()
        run_reverse_sync(request, client=client)
        result["unchanged_requests"] = server.stats()["requests"]
    return result


def flat(mode_name: str, mode: Mode, sizes: dict[int, dict[str, Result]], quota_result: Result,
         webhooks: dict[str, float]) -> dict[str, Any]:
    """The flat keys of results.json (the issue's names), then the details."""
    smallest, largest = min(sizes), max(sizes)
    small = sizes[smallest]
    rates = {size: phases["ours"]["leads"] / phases["ours"]["seconds"]
             for size, phases in sizes.items()}
    incremental = sizes[largest]["ours"]["incremental"]
    load, reverse = quota_result["load"], quota_result["reverse"]
    return {
        "speedup_vs_rest_api": rates[smallest] / (small["rest_api"]["leads"]
                                                  / small["rest_api"]["seconds"]),
        "ratio_to_fetch_floor": small["ours"]["seconds"] / small["floor"]["seconds"],
        "ratio_to_fetch_floor_largest": (sizes[largest]["ours"]["seconds"]
                                         / sizes[largest]["floor"]["seconds"]),
        # the client's CPU seconds (all threads) of our load over the floor's: with the
        # sandbox on the same cores, the wall-time ratio cannot go far below this
        "cpu_ratio_to_fetch_floor": small["ours"]["cpu_seconds"] / small["floor"]["cpu_seconds"],
        "peak_rss_mb_max": sizes[largest]["ours"]["peak_rss_mb"],
        "rss_growth_mb_max": sizes[largest]["ours"]["rss_growth_mb"],
        "leads_per_s_spread": (max(rates.values()) - min(rates.values())) / max(rates.values()),
        "budget_share": load["budget_share"],
        "rate_limited_429s": load["server_429s"],
        "load_seconds_vs_ideal": load["seconds"] / load["ideal_seconds"],
        "reverse_budget_share": reverse["budget_share"],
        "reverse_rate_limited_429s": reverse["server_429s"],
        "reverse_unchanged_requests": reverse["unchanged_requests"],
        "incremental_changed": incremental["changed"],
        "incremental_requests": incremental["requests"],
        "incremental_requests_bound": math.ceil(incremental["changed"] / 100) + 5,
        **webhooks,
        "mode": mode_name,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "dlt": dlt.__version__, "platform": platform.platform(),
                    "load_average_at_end": round(os.getloadavg()[0], 1)},
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {"quota": {"limit": mode.limit, "window_seconds": mode.window,
                               "latency_ms": mode.latency_ms, "leads": mode.quota_leads,
                               "reverse_rows": mode.reverse_rows}},
        "sizes": {str(size): phases for size, phases in sizes.items()},
        "quota": quota_result,
    }


def verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    op, target = TARGETS[key]
    met = {">=": value >= target, "<=": value <= target, "<": value < target,
           "==": value == target}[op]
    return f"target {op} {target:g}: {'meets' if met else 'MISSES'}"


def table(results: dict[str, Any]) -> list[str]:
    lines = [(f"{'size':>9} {'phase':<10} {'leads':>8} {'seconds':>8} {'leads/s':>8} "
             f"{'req':>6} {'peak RSS':>9} {'RSS+':>6} {'CPU s':>6} {'sandbox CPU s':>13}")]
    for size, phases in results["sizes"].items():
        for name in ("floor", "ours", "rest_api"):
            phase = phases.get(name)
            if phase:
                lines.append(f"{size:>9} {name:<10} {phase['leads']:>8} {phase['seconds']:8.2f} "
                             f"{phase['leads'] / phase['seconds']:8.0f} "
                             f"{phase.get('requests', ''):>6} {phase['peak_rss_mb']:8.0f}M "
                             f"{phase['rss_growth_mb']:5.0f}M {phase['cpu_seconds']:6.1f} "
                             f"{phase['sandbox_cpu_seconds']:13.1f}")
        if "ours" in phases:
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in phases["ours"].get("steps", {}).items())
            lines.append(f"{'':>9} ours' last dlt part: {steps}; sandbox started in "
                         f"{phases['sandbox_start_seconds']['seconds']:.0f}s")
    load, reverse = results["quota"]["load"], results["quota"]["reverse"]
    lines.append("")
    lines.append(f"quota load     {load['server_requests']} requests in {load['seconds']:.1f}s "
                 f"(ideal {load['ideal_seconds']:.1f}s), 429s {load['server_429s']}")
    lines.append(f"quota reverse  {reverse['server_requests']} requests in "
                 f"{reverse['seconds']:.1f}s (ideal {reverse['ideal_seconds']:.1f}s), "
                 f"429s {reverse['server_429s']}, {reverse['confirmed']} confirmed")
    lines.append("")
    for key, value in results.items():
        if isinstance(value, int | float):
            lines.append(f"{key:<36} {value:>10.3f}  {verdict(key, value)}")
    bound = results["incremental_requests_bound"]
    lines.append(f"{'incremental requests vs bound':<36} {results['incremental_requests']:>10} "
                 f" target <= {bound}: "
                 f"{'meets' if results['incremental_requests'] <= bound else 'MISSES'}")
    machine = results["machine"]
    lines.append(f"machine: {machine['cores']} cores, python {machine['python']}, "
                 f"dlt {machine['dlt']}, load average {machine['load_average_at_end']} at the end")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="add 1M leads and 10k reverse rows")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    mode_name = "full" if args.full else "quick"
    mode = MODES[mode_name]
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    workdir = Path(tempfile.mkdtemp(prefix="leadrat-bench-all-"))
    sizes = {size: scale(size, workdir, baseline=size == mode.sizes[0]) for size in mode.sizes}
    quota_result = quota(mode, workdir)
    print("webhooks ...", flush=True)
    webhooks = bench_webhooks.measure(["--events", str(mode.webhook_events)])
    results = flat(mode_name, mode, sizes, quota_result, webhooks)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print("\n".join(table(results)))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

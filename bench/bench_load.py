"""Speed and memory of a LeadRat → DuckDB load, as ratios against baselines on the same machine.

    python bench/bench_load.py [--leads 50000] [--latency-ms 0] [--plan pro] [--profile]

One sandbox (in a child process, so the server does not share our GIL) serves every phase:

- A  fetch only: every lead page through `LeadRatClient` (one cursor, per_page=100). The
     ceiling for a single sequential reader: HTTP + JSON parsing, nothing else.
- B  ours: `run_load` (leads resource) into a fresh DuckDB file, at N/5 and at N leads
     (two sizes show whether memory is flat), then an incremental run after `churn(1000)`.
- C  baseline: dlt's generic `rest_api` source configured for the same endpoint, merge on
     `id`, incremental on `updated_at`, parquet load files, into another fresh DuckDB file.

By default the sandbox has no rate limit (`rate_limit=0`), so the API is never the
bottleneck and the figures measure the client and the pipeline. With `--latency-ms` the
sandbox answers every request that much later and enforces the `--plan` budget (Pro:
1,000 requests/min): that mode shows how close the concurrent time slices come to the
budget (requests/min achieved).

Each phase runs in a forked child of this process (unless `--same-process`), so its peak
RSS growth is its own and not hidden by memory an earlier phase left to the allocator.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import math
import multiprocessing
import os
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import dlt
import psutil
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from dlt.sources.rest_api import rest_api_source

from leadrat_source import settings
from leadrat_source.client import LeadRatClient
from leadrat_source.lead_scan import LeadScanner, ScanSettings
from leadrat_source.lead_tables import LeadTableBuilder, lead_tags_table
from leadrat_source.load import LoadRequest, run_load
from leadrat_source.sandbox import Sandbox, SandboxConfig
from leadrat_source.scan_ranges import ScanRange

SAMPLE_SECONDS = 0.05
MB = 1024 * 1024
TARGET_RATIO = 10
Result = dict[str, Any]


@dataclass
class Env:
    """What every phase needs: the sandbox's address and key, and a scratch folder."""

    base_url: str
    api_key: str
    workdir: Path
    leads: int

    def client(self) -> LeadRatClient:
        return LeadRatClient(self.base_url, api_key=self.api_key, timeout=60.0)


class PeakRss:
    """Samples this process's RSS every 50 ms in a thread while the run goes on (a peak
    within a dlt step, not only between steps); `growth` is peak minus start."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / MB

    @property
    def peak_mb(self) -> float:
        return self.peak / MB


@contextmanager
def measured(result: Result) -> Iterator[None]:
    """Fill `seconds`, `cpu_seconds` (this process, all threads) and `rss_growth_mb` of
    `result` for the enclosed block."""
    with PeakRss() as rss:
        started, cpu_started = time.perf_counter(), time.process_time()
        yield
        result["seconds"] = time.perf_counter() - started
        result["cpu_seconds"] = time.process_time() - cpu_started
    result["rss_growth_mb"] = rss.growth_mb
    result["peak_rss_mb"] = rss.peak_mb


# --- phase A ---------------------------------------------------------------------------

def fetch_only(env: Env) -> Result:
    """Every lead page, one cursor, nothing done with the leads but counting them."""
    result: Result = {"leads": 0}
    with env.client() as client, measured(result):
        for page in client.leads.iter_pages(per_page=settings.PER_PAGE, sort="updated_at",
                                            include_deleted=True):
            result["leads"] += len(page.items)
        result["requests"] = client.stats.snapshot().requests
    return result


def fetch_floor(env: Env) -> Result:
    """The same concurrent reading of every page as `run_load`'s scan (time slices, the
    default workers), with nothing built or loaded: the floor a full load is compared to."""
    result: Result = {"leads": 0}
    with env.client() as client, measured(result):
        scanner = LeadScanner(client.leads, ScanSettings(per_page=settings.PER_PAGE,
                                                         workers=settings.SCAN_WORKERS))
        window = ScanRange(settings.DEFAULT_INITIAL_UPDATED_AT, dt.datetime.now(dt.UTC))
        for page in scanner.scan(window, catch_up=False):
            result["leads"] += len(page)
        result["requests"] = client.stats.snapshot().requests
    return result


# --- phase B ---------------------------------------------------------------------------

def our_request(env: Env, name: str) -> LoadRequest:
    os.environ["DESTINATION__DUCKDB__CREDENTIALS"] = str(env.workdir / f"{name}.duckdb")
    return LoadRequest(destination="duckdb", dataset="leadrat", pipeline_name=name,
                       resources=["leads"], pipelines_dir=str(env.workdir / "pipelines"))


def step_seconds(pipeline: dlt.Pipeline) -> dict[str, float]:
    """Seconds of dlt's extract/normalize/load steps of the pipeline's last run."""
    trace = pipeline.last_trace
    return {
        step.step: (step.finished_at - step.started_at).total_seconds()
        for step in (trace.steps if trace else [])
        if step.step in ("extract", "normalize", "load") and step.finished_at
    }


def ours(env: Env, name: str, churn: Callable[[int], Any] | None = None,
         profile_to: Path | None = None, changes: int = 1_000) -> Result:
    """A first full load with `run_load`; with `churn`, then an incremental run after
    `changes` changes (`changed`: the distinct leads they touched)."""
    result: Result = {}
    request = our_request(env, name)
    with env.client() as client:
        profiler = ThreadProfiler() if profile_to else None
        with measured(result):
            if profiler:
                profiler.start()
            summary = run_load(request, client=client)
            if profiler and profile_to:
                profiler.stop(profile_to)
        result["leads"] = summary.rows.get("leads", 0)
        result["requests"] = summary.requests
        pipeline = dlt.attach(name, pipelines_dir=str(env.workdir / "pipelines"))
        result["steps"] = step_seconds(pipeline)
        if churn is not None:
            changed = len({change["lead_id"] for change in churn(changes)})
            started = time.perf_counter()
            again = run_load(request, client=client)
            result["incremental"] = {"seconds": time.perf_counter() - started,
                                     "changed": changed,
                                     "requests": again.requests,
                                     "leads": again.rows.get("leads", 0)}
    return result


def arrow_build(env: Env) -> Result:
    """Seconds `LeadTableBuilder` + `lead_tags_table` take for all leads (pages in memory)."""
    with env.client() as client:
        pages = [page.items for page in client.leads.iter_pages(
            per_page=settings.PER_PAGE, sort="updated_at", include_deleted=True)]
    batches, batch = [], []
    for items in pages:
        batch.extend(items)
        if len(batch) >= settings.LEADS_PER_BATCH:
            batches.append(batch)
            batch = []
    batches.append(batch)
    builder = LeadTableBuilder()
    started = time.perf_counter()
    for batch in batches:
        builder.leads_table(batch)
    leads_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for batch in batches:
        lead_tags_table(batch)
    return {"leads_table_seconds": leads_seconds,
            "tags_table_seconds": time.perf_counter() - started,
            "leads": sum(map(len, batches))}


def ours_small(env: Env) -> Result:
    """B at N/5 leads: a fresh pipeline reading only the first N/5 leads' updated_at window."""
    result: Result = {}
    request = our_request(env, "ours_small")
    with env.client() as client:
        pages = client.leads.iter_pages(per_page=settings.PER_PAGE, sort="updated_at",
                                        include_deleted=True)
        seen: list[dict[str, Any]] = []
        for page in pages:
            seen.extend(page.items)
            if len(seen) > env.leads:
                break
        until = LeadTableBuilder().leads_table(seen[env.leads:env.leads + 1])["updated_at"][0]
        window = LoadRequest(**{**request.__dict__, "since": settings.DEFAULT_INITIAL_UPDATED_AT,
                                "until": until.as_py()})
        before = client.stats.snapshot().requests
        with measured(result):
            summary = run_load(window, client=client)
        result["leads"] = summary.rows.get("leads", 0)
        result["requests"] = client.stats.snapshot().requests - before
    return result



# --- phase C ---------------------------------------------------------------------------

def rest_api_baseline(env: Env) -> Result:
    """dlt's generic REST source, configured the way its docs suggest for this API."""
    source = rest_api_source({
        "client": {
            "base_url": env.base_url,
            "auth": {"type": "api_key", "name": "X-API-Key", "api_key": env.api_key,
                     "location": "header"},
        },
        "resources": [{
            "name": "leads",
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {
                "path": "leads",
                "data_selector": "data",
                "paginator": JSONResponseCursorPaginator(cursor_path="meta.next_cursor",
                                                         cursor_param="cursor"),
                "params": {
                    "per_page": settings.PER_PAGE,
                    "sort": "updated_at",
                    "include_deleted": "true",
                    "updated_since": {"type": "incremental", "cursor_path": "updated_at",
                                      "initial_value": "2000-01-01T00:00:00Z"},
                },
            },
        }],
    })
    pipeline = dlt.pipeline(
        pipeline_name="rest_api_baseline", pipelines_dir=str(env.workdir / "pipelines"),
        destination=dlt.destinations.duckdb(str(env.workdir / "rest_api.duckdb")),
        dataset_name="leadrat",
    )
    result: Result = {}
    with measured(result):
        # parquet, as ours: dlt's default (jsonl) would make the baseline slower than it must be
        pipeline.run(source, loader_file_format="parquet").raise_on_failed_jobs()
    trace = pipeline.last_trace
    counts = trace.last_normalize_info.row_counts if trace and trace.last_normalize_info else {}
    result["leads"] = counts.get("leads", 0)
    result["steps"] = step_seconds(pipeline)
    return result


# --- profiling -------------------------------------------------------------------------

class ThreadProfiler:
    """cProfile of the main thread and of every thread started while it runs (the scan's
    reader threads do the HTTP work, which a main-thread profile would not see)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def _hook(self, *_: Any) -> None:
        profile = cProfile.Profile()
        self.profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread's life

    def start(self) -> None:
        threading.setprofile(self._hook)
        self._hook()

    def stop(self, path: Path) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]
        self.profiles[0].disable()
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        stats.dump_stats(str(path))


#: Where the profiled time goes, by the file of the function that spent it (tottime).
PROFILE_GROUPS = (
    ("HTTP (requests/urllib3/socket)", ("requests/", "urllib3/", "http/client", "socket",
                                        "ssl.py", "selectors", "<method 'recv")),
    ("JSON parse", ("orjson", "json/", "<method 'decode'")),
    ("our Arrow build (lead_tables)", ("lead_tables.py",)),
    ("our client/scan", ("leadrat_source/",)),
    ("pyarrow", ("pyarrow",)),
    ("duckdb", ("duckdb",)),
    ("dlt", ("dlt/",)),
    ("waiting (locks/queues/sleep)", ("acquire", "threading.py", "queue.py", "sleep",
                                      "<method 'wait'", "poll")),
)


def summarize_profile(path: Path, top: int = 20) -> list[str]:
    stats = pstats.Stats(str(path))
    groups: dict[str, float] = {}
    rows = []
    for (filename, line, function), (_, _, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename}:{line}({function})"
        group = next((name for name, needles in PROFILE_GROUPS
                      if any(needle in where for needle in needles)), "other (python)")
        groups[group] = groups.get(group, 0.0) + tottime
        rows.append((tottime, cumtime, where))
    total = sum(groups.values()) or 1.0
    lines = ["profile: own time (tottime, all threads; waiting threads count too) by group"]
    lines += [f"  {name:<34} {seconds:8.2f}s {100 * seconds / total:5.1f}%"
              for name, seconds in sorted(groups.items(), key=lambda kv: -kv[1])]
    lines.append(f"top {top} functions by own time (file:line(function), tottime, cumtime):")
    for tottime, cumtime, where in sorted(rows, reverse=True)[:top]:
        short = where.split("site-packages/")[-1].split("/work/main/")[-1]
        lines.append(f"  {tottime:7.2f}s {cumtime:7.2f}s  {short}")
    return lines


# --- running ---------------------------------------------------------------------------

def in_child(function: Callable[..., Result], *args: Any) -> Result:
    """Run `function(*args)` in a forked child; its RSS growth is then its own."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def target() -> None:
        try:
            send.send(function(*args))
        except Exception as error:  # noqa: BLE001 - any failure is reported by the parent
            send.send({"error": f"{type(error).__name__}: {error}"})

    child = context.Process(target=target)
    child.start()
    result: Result = receive.recv()
    child.join()
    if "error" in result:
        raise RuntimeError(f"{function.__name__} failed in its child process: {result['error']}")
    return result


@dataclass
class Report:
    leads: int
    latency_ms: float
    plan: str
    phases: dict[str, Result] = field(default_factory=dict)

    def rate(self, name: str) -> float:
        phase = self.phases.get(name)
        return phase["leads"] / phase["seconds"] if phase and phase["seconds"] else 0.0

    def lines(self) -> list[str]:
        pages = math.ceil(self.leads / settings.PER_PAGE)
        mode = (f"latency {self.latency_ms:g} ms, plan {self.plan} budget enforced"
                if self.latency_ms else "no rate limit, no added latency")
        out = [(f"LeadRat load benchmark: {self.leads} leads, {mode}, "
                f"python {sys.version.split()[0]}, dlt {dlt.__version__}, "
                f"{os.cpu_count()} cpus"), ""]
        out.append(f"{'phase':<44} {'leads':>7} {'seconds':>8} {'leads/s':>8} "
                   f"{'req':>5} {'req/min':>7} {'RSS+ MB':>8}")
        labels = {"A": "A  fetch only (LeadRatClient, one cursor)",
                  "B_small": "B  ours, run_load, N/5 leads",
                  "B": "B  ours, run_load, N leads",
                  "C": "C  dlt rest_api (generic), N leads"}
        for key, label in labels.items():
            phase = self.phases.get(key)
            if not phase:
                continue
            requests = phase.get("requests")
            per_min = f"{60 * requests / phase['seconds']:7.0f}" if requests else f"{'':>7}"
            out.append(f"{label:<44} {phase['leads']:>7} {phase['seconds']:8.2f} "
                       f"{self.rate(key):8.0f} {requests or '':>5} {per_min} "
                       f"{phase['rss_growth_mb']:8.0f}")
        out.append("")
        if "C" in self.phases and self.rate("C"):
            ratio = self.rate("B") / self.rate("C")
            verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
            out.append(f"B/C speed ratio      {ratio:6.1f}x  (target >= {TARGET_RATIO}x: {verdict})")
        if self.rate("A"):
            out.append(f"B/A speed ratio      {self.rate('B') / self.rate('A'):6.2f}x  "
                       "(1.0 = as fast as fetching alone)")
        if "C" in self.phases:
            out.append(f"peak RSS growth      B {self.phases['B']['rss_growth_mb']:.0f} MB, "
                       f"C {self.phases['C']['rss_growth_mb']:.0f} MB")
        if "B_small" in self.phases:
            out.append(f"B memory vs size     {self.phases['B_small']['leads']} leads: "
                       f"{self.phases['B_small']['rss_growth_mb']:.0f} MB, "
                       f"{self.phases['B']['leads']} leads: "
                       f"{self.phases['B']['rss_growth_mb']:.0f} MB")
        b = self.phases["B"]
        out.append(f"B requests           first run {b['requests']} "
                   f"(ceil(N/100) = {pages}, +{b['requests'] - pages} for the first page and "
                   "the time slices)")
        if "incremental" in b:
            inc = b["incremental"]
            out.append(f"B incremental        after churn(1000) ({inc['changed']} leads changed): "
                       f"{inc['requests']} requests, {inc['leads']} leads, {inc['seconds']:.2f}s")
        for key in ("B", "C"):
            if key in self.phases and self.phases[key].get("steps"):
                steps = ", ".join(f"{name} {seconds:.2f}s"
                                  for name, seconds in self.phases[key]["steps"].items())
                out.append(f"dlt steps {key:<10} {steps}")
        if "arrow" in self.phases:
            arrow = self.phases["arrow"]
            out.append(f"Arrow build (B)      leads_table {arrow['leads_table_seconds']:.2f}s, "
                       f"lead_tags_table {arrow['tags_table_seconds']:.2f}s for "
                       f"{arrow['leads']} leads")
        return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=0,
                        help="sandbox answers this late and enforces --plan's budget")
    parser.add_argument("--plan", default="pro", choices=("free", "growth", "pro"))
    parser.add_argument("--no-baseline", action="store_true", help="skip phase C (rest_api)")
    parser.add_argument("--no-small", action="store_true", help="skip B at N/5 leads")
    parser.add_argument("--profile", action="store_true",
                        help="profile one more run of B (all threads) and time the Arrow build")
    parser.add_argument("--same-process", action="store_true",
                        help="run phases in this process instead of forked children")
    parser.add_argument("--workdir", type=Path, help="keep DuckDB files and profiles here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = (lambda function, *a: function(*a)) if args.same_process else in_child
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadrat-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    config = SandboxConfig(leads=args.leads, seed=args.seed, plan=args.plan,
                           rate_limit=None if args.latency_ms else 0, daily_cap=None)
    report = Report(args.leads, args.latency_ms, args.plan)
    print(f"starting sandbox with {args.leads} leads (workdir {workdir}) ...", flush=True)
    with Sandbox.spawn(config) as server:
        if args.latency_ms:
            server.set_faults(latency_ms=args.latency_ms)
        env = Env(server.base_url, server.read_key, workdir, args.leads)
        phases: list[tuple[str, Callable[..., Result], tuple[Any, ...]]] = [
            ("A", fetch_only, (env,))]
        if not args.no_small:
            small = Env(server.base_url, server.read_key, workdir, args.leads // 5)
            phases.append(("B_small", ours_small, (small,)))
        phases.append(("B", ours, (env, "ours", server.churn)))
        if not args.no_baseline:
            phases.append(("C", rest_api_baseline, (env,)))
        for key, function, phase_args in phases:
            print(f"phase {key} ...", flush=True)
            report.phases[key] = run(function, *phase_args)
        if args.profile:
            print("profiling B ...", flush=True)
            profile_path: Path | None = workdir / "ours.prof"
            try:
                report.phases["B_profiled"] = run(ours, env, "ours_profiled", None, profile_path)
            except RuntimeError as error:  # report what the other phases measured anyway
                print(f"profiled run failed: {error}", flush=True)
                profile_path = None
            report.phases["arrow"] = run(arrow_build, env)
    print()
    print("\n".join(report.lines()))
    if args.profile and profile_path:
        print()
        print("\n".join(summarize_profile(profile_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

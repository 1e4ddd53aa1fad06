"""How fast the sandbox serves: it must never be the bottleneck of the other benchmarks.

    python bench/bench_sandbox.py [--scan-leads 50000] [--big-leads 1000000] [--skip-big]

Every sandbox runs in a child process (`Sandbox.spawn`, no rate limit) and is read through
`LeadRatClient`, so the figures are end to end over loopback, as the connector sees them:

- startup: seconds from spawn to `ready` at `--startup-leads`, `--scan-leads` and
  `--big-leads` leads;
- cursor scans (per_page=100, sort=updated_at, include_deleted=true, filters repeated on
  every request, as the connector sends them) for each filter combination: a full scan
  of the `--scan-leads` sandbox (ms/page over the first 50 pages, the last 50 and all),
  and the first `--big-pages` pages of the big sandbox;
- page mode: ms for a page near the end of the big sandbox (OFFSET territory);
- requests/s with 4 concurrent clients (separate processes, cursor pages) on the big one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from leadrat_source.client import LeadRatClient
from leadrat_source.sandbox import Sandbox, SandboxConfig

PER_PAGE = 100
EDGE_PAGES = 50
CONCURRENT_CLIENTS = 4
CONCURRENT_SECONDS = 5.0
WINDOW_START = datetime(2000, 1, 1, tzinfo=UTC)


def combinations() -> dict[str, Callable[[], dict[str, Any]]]:
    """Filter sets by name; built per scan so `updated_before` is 'now' when the scan starts."""
    base = {"sort": "updated_at", "include_deleted": True}
    return {
        "none": lambda: dict(base),
        "updated_since": lambda: {**base, "updated_since": WINDOW_START},
        "since+before": lambda: {**base, "updated_since": WINDOW_START,
                                 "updated_before": datetime.now(UTC)},
        "status": lambda: {**base, "status": "qualified"},
        "tag": lambda: {**base, "tag": "vip"},
    }


def spawn(leads: int) -> tuple[Any, float]:
    config = SandboxConfig(leads=leads, seed=7, plan="pro", rate_limit=0, daily_cap=None)
    started = time.perf_counter()
    sandbox = Sandbox.spawn(config)
    sandbox.start()
    return sandbox, time.perf_counter() - started


def scan(client: LeadRatClient, filters: dict[str, Any], max_pages: int | None) -> list[float]:
    """Seconds per page of one cursor scan (all of it unless `max_pages`)."""
    times: list[float] = []
    cursor = None
    while True:
        started = time.perf_counter()
        page = client.leads.list_page(per_page=PER_PAGE, cursor=cursor, **filters)
        times.append(time.perf_counter() - started)
        cursor = page.next_cursor
        if cursor is None or (max_pages is not None and len(times) >= max_pages):
            return times


def ms(values: list[float]) -> str:
    return f"{statistics.fmean(values) * 1000:7.2f}" if values else "      -"


def report_scans(client: LeadRatClient, leads: int, max_pages: int | None) -> None:
    label = "full scan" if max_pages is None else f"first {max_pages} pages"
    print(f"\ncursor scans, {leads} leads, {label} (ms/page)")
    print(f"{'filters':<16}{'pages':>7}{'first50':>9}{'last50':>9}{'all':>9}")
    for name, make in combinations().items():
        times = scan(client, make(), max_pages)
        print(f"{name:<16}{len(times):>7}{ms(times[:EDGE_PAGES]):>9}"
              f"{ms(times[-EDGE_PAGES:]):>9}{ms(times):>9}", flush=True)


def report_page_mode(client: LeadRatClient, leads: int) -> None:
    total = client.leads.list_page(per_page=PER_PAGE, sort="updated_at").meta["total"]
    deep = max(1, total // PER_PAGE - 1)
    print(f"\npage mode, {leads} leads (ms/page, mean of 5)")
    for label, number in (("page 1", 1), (f"page {deep}", deep)):
        for sort in ("created_at", "updated_at"):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                client.leads.list_page(per_page=PER_PAGE, page=number, sort=sort)
                times.append(time.perf_counter() - started)
            print(f"{label:<12} sort={sort:<12}{ms(times):>9}", flush=True)


def _worker(base_url: str, key: str, seconds: float, results: Any) -> None:
    """One client process: cursor pages (restarting at the end) until time is up."""
    client = LeadRatClient(base_url, api_key=key)
    filters = combinations()["since+before"]()
    done = 0
    cursor = None
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        page = client.leads.list_page(per_page=PER_PAGE, cursor=cursor, **filters)
        cursor = page.next_cursor
        done += 1
    results.put(done)


def report_concurrency(sandbox: Any) -> None:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_worker, args=(sandbox.base_url, sandbox.read_key,
                                                     CONCURRENT_SECONDS, results))
               for _ in range(CONCURRENT_CLIENTS)]
    for worker in workers:
        worker.start()
    done = sum(results.get() for _ in workers)
    for worker in workers:
        worker.join()
    print(f"\n{CONCURRENT_CLIENTS} concurrent clients: {done / CONCURRENT_SECONDS:.0f} requests/s "
          f"({done} cursor pages in {CONCURRENT_SECONDS:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan-leads", type=int, default=50_000)
    parser.add_argument("--big-leads", type=int, default=1_000_000)
    parser.add_argument("--big-pages", type=int, default=EDGE_PAGES)
    parser.add_argument("--skip-big", action="store_true", help="only the --scan-leads sandbox")
    parser.add_argument("--startup-leads", type=int, default=100_000)
    args = parser.parse_args()

    sandbox, seconds = spawn(args.startup_leads)
    sandbox.stop()
    print(f"startup {args.startup_leads} leads: {seconds:.1f} s", flush=True)
    sandbox, seconds = spawn(args.scan_leads)
    print(f"startup {args.scan_leads} leads: {seconds:.1f} s", flush=True)
    with sandbox:
        client = LeadRatClient(sandbox.base_url, api_key=sandbox.read_key)
        report_scans(client, args.scan_leads, None)
    if args.skip_big:
        return
    sandbox, seconds = spawn(args.big_leads)
    print(f"\nstartup {args.big_leads} leads: {seconds:.1f} s", flush=True)
    with sandbox:
        client = LeadRatClient(sandbox.base_url, api_key=sandbox.read_key)
        report_scans(client, args.big_leads, args.big_pages)
        report_page_mode(client, args.big_leads)
        report_concurrency(sandbox)


if __name__ == "__main__":
    main()

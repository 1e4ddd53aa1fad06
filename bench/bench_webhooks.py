"""Speed of the webhook receiver: durable acknowledgements per second, ack latency, and
how long an event takes from its delivery to its row in the warehouse.

    python bench/bench_webhooks.py [--events 20000] [--senders 64] [--rate 500] [--seconds 10]

`leadrat webhooks serve` runs as a child process with its defaults (flush every 5 s or
5,000 events, SQLite journal with `synchronous=FULL`) into a fresh DuckDB file; this
process sends signed lead events over loopback HTTP with aiohttp:

- burst: `--senders` concurrent senders deliver `--events` events as fast as they are
  acknowledged (an acknowledgement means: committed to the journal on disk). Flushes into
  DuckDB run meanwhile, as they would in production.
- steady: `--rate` events per second for `--seconds`; an event's delivery-to-row latency
  is the time from its acknowledgement until the receiver's `flushed` counter (raised
  after dlt's load committed) covers it.

At the end, the warehouse must hold every event exactly once (checked with DuckDB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import duckdb
import psutil

SECRET = "whsec_bench"
TARGET_ACKS_PER_SECOND = 3_000


def event_body(n: int, run: str) -> bytes:
    lead = {"id": f"lead_{run}_{n % 5000}", "name": f"Lead {n}", "email": f"l{n}@example.com",
            "phone": None, "company": "Acme", "status": "contacted", "source": "website",
            "tags": ["vip", "b2b"][: n % 3], "score": n % 100, "pipeline_id": "pipe_1",
            "stage_id": "stage_2", "custom_fields": {"budget": n * 1.5, "region": "south"},
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": f"2026-06-01T{n // 3_600_000 % 24:02d}:{n // 60_000 % 60:02d}:"
                          f"{n // 1000 % 60:02d}.{n % 1000:03d}Z",
            "deleted_at": None}
    return json.dumps({"id": f"evt_{run}_{n:08d}", "type": "lead.updated",
                       "created_at": lead["updated_at"],
                       "data": {"lead": lead, "previous": {"score": None}}}).encode()


def signature(body: bytes) -> str:
    t = int(time.time())
    return f"t={t},v1=" + hmac.new(SECRET.encode(), f"{t}.".encode() + body,
                                   hashlib.sha256).hexdigest()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def burst(url: str, bodies: list[bytes], senders: int) -> tuple[float, list[float]]:
    """Send all bodies with `senders` concurrent senders; (seconds, ack latencies)."""
    headers = [{"Content-Type": "application/json", "LeadRat-Signature": signature(body)}
               for body in bodies]
    latencies: list[float] = []
    next_index = iter(range(len(bodies)))

    async def sender(session: aiohttp.ClientSession) -> None:
        for index in next_index:
            started = time.perf_counter()
            async with session.post(url, data=bodies[index], headers=headers[index]) as reply:
                await reply.read()
                assert reply.status == 200, reply.status
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(senders)))
        return time.perf_counter() - started, latencies


async def steady(url: str, metrics_url: str, bodies: list[bytes], rate: float,
                 flushed_before: int) -> list[float]:
    """Send at `rate`/s; the delivery-to-row latency of each event."""
    acked_at: list[float] = []
    loaded_at: list[float] = []
    done = asyncio.Event()

    async def watch(session: aiohttp.ClientSession) -> None:
        while len(loaded_at) < len(bodies):
            async with session.get(metrics_url) as reply:
                text = await reply.text()
            flushed = _flushed(text)
            now = time.perf_counter()
            while len(loaded_at) < min(flushed - flushed_before, len(acked_at)):
                loaded_at.append(now)
            await asyncio.sleep(0.05)
        done.set()

    async with aiohttp.ClientSession() as session:
        watcher = asyncio.create_task(watch(session))
        started = time.perf_counter()
        for n, body in enumerate(bodies):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            headers = {"Content-Type": "application/json", "LeadRat-Signature": signature(body)}
            async with session.post(url, data=body, headers=headers) as reply:
                assert reply.status == 200
            acked_at.append(time.perf_counter())
        await asyncio.wait_for(done.wait(), timeout=120)
        await watcher
    return [loaded - acked for acked, loaded in zip(acked_at, loaded_at, strict=True)]


def measure(argv: list[str] | None = None) -> dict[str, float]:
    """Run both phases, print them, and return the figures (`bench/bench_all.py` keeps them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench_webhooks_"))
    warehouse = workdir / "warehouse.duckdb"
    env = {**os.environ, "SOURCES__LEADRAT__WEBHOOK_SECRET": SECRET,
           "DLT_DATA_DIR": str(workdir / "dlt"),
           "DESTINATION__DUCKDB__CREDENTIALS": str(warehouse)}
    receiver = subprocess.Popen(
        [sys.executable, "-m", "leadrat_source.cli", "webhooks", "serve", "--port", "0"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=(workdir / "receiver.log").open("w"),
        text=True)
    try:
        assert receiver.stdout is not None
        url = receiver.stdout.readline().strip().partition("=")[2]
        metrics_url = url.replace("/webhooks/leadrat", "/metrics")
        run = os.urandom(3).hex()
        burst_bodies = [event_body(n, run) for n in range(args.events)]
        server = psutil.Process(receiver.pid)
        server_cpu, own_cpu = sum(server.cpu_times()[:2]), time.process_time()
        seconds, latencies = asyncio.run(burst(url, burst_bodies, args.senders))
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
        own_cpu = time.process_time() - own_cpu
        acks = len(burst_bodies) / seconds
        print(f"burst   {len(burst_bodies)} events, {args.senders} senders: {seconds:.2f}s, "
              f"{acks:,.0f} durable acks/s (target >= {TARGET_ACKS_PER_SECOND:,}: "
              f"{'ok' if acks >= TARGET_ACKS_PER_SECOND else 'MISSES'}); ack latency "
              f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms")
        # on a busy machine the wall clock shows the machine; CPU time shows the receiver
        per_ack = server_cpu / len(burst_bodies) * 1000
        print(f"        receiver (HTTP + journal) CPU {per_ack:.3f} ms per ack = "
              f"{1000 / per_ack:,.0f} acks/s per busy core; senders' CPU "
              f"{own_cpu / len(burst_bodies) * 1000:.3f} ms per event; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        # wait for the burst to be loaded, so the steady phase measures its own events
        # (by the flushed counter: the journal is emptied a moment before the counter rises,
        # and a steady phase started in between would count the burst's batch as its own)
        while (flushed_before := _flushed(_get(metrics_url))) < len(burst_bodies):
            time.sleep(0.2)
        steady_count = int(args.rate * args.seconds)
        steady_bodies = [event_body(n, run) for n in range(args.events,
                                                            args.events + steady_count)]
        to_row = asyncio.run(steady(url, metrics_url, steady_bodies, args.rate, flushed_before))
        print(f"steady  {steady_count} events at {args.rate:.0f}/s: delivery-to-row latency "
              f"p50 {statistics.median(to_row):.2f} s, p99 {percentile(to_row, 0.99):.2f} s, "
              f"max {max(to_row):.2f} s (flush every 5 s or 5,000 events)")
        flusher = next(child for child in server.children()
                       if "spawn_main" in " ".join(child.cmdline()))
        flusher_cpu = sum(flusher.cpu_times()[:2])
        total = args.events + steady_count
        print(f"        flusher CPU {flusher_cpu / total * 1000:.3f} ms per event "
              "(Arrow, dlt extract/normalize/load into DuckDB, journal clean-up; startup included)")
        receiver.terminate()
        assert receiver.wait(timeout=120) == 0
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            rows, distinct = connection.sql(
                "select count(*), count(distinct id) from leadrat.lead_events").fetchone()  # type: ignore[misc]
        print(f"warehouse: {rows} lead_events rows, {distinct} distinct, expected {total}")
        assert rows == distinct == total
    finally:
        if receiver.poll() is None:
            receiver.kill()
    return {"webhook_acks_per_s": acks,
            "webhook_ack_p99_ms": percentile(latencies, 0.99) * 1000,
            "webhook_receiver_cpu_ms_per_ack": per_ack,
            "webhook_delivery_to_row_p99_s": percentile(to_row, 0.99)}


def main() -> int:
    measure()
    return 0


def _flushed(metrics: str) -> int:
    """The receiver's count of events loaded into the warehouse."""
    return int(float(re.search(r"flushed_total (\S+)", metrics).group(1)))  # type: ignore[union-attr]


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


if __name__ == "__main__":
    sys.exit(main())

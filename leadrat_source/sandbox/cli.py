"""`leadrat sandbox ...` (and `python -m leadrat_source.sandbox ...`): serve until interrupted.

Prints `LEADRAT_BASE_URL=`, `LEADRAT_API_KEY=`, `LEADRAT_READ_KEY=` and
`LEADRAT_BEARER_TOKEN=` lines, then `ready`: the keys are printed by design (that is how
a user learns them); nothing else secret is ever written out.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from leadrat_source.contract import PLANS
from leadrat_source.sandbox.config import SandboxConfig
from leadrat_source.sandbox.service import Sandbox

FAULT_FLAGS = ("error_rate", "gateway_error_rate", "spurious_429_rate", "drop_rate",
               "truncate_rate", "drift_rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plan", choices=sorted(PLANS), default="growth")
    parser.add_argument("--pipelines", type=int, default=3)
    parser.add_argument("--rate-limit", type=int, help="requests per window; 0 = unlimited")
    parser.add_argument("--daily-cap", type=int, default=-1,
                        help="-1 = the plan's cap, 0 or more = this cap")
    parser.add_argument("--no-daily-cap", action="store_true", help="no daily cap at all")
    parser.add_argument("--window-seconds", type=float, default=60.0)
    parser.add_argument("--day-seconds", type=float, default=86_400.0,
                        help="length of the daily cap's day (shorter simulates new days)")
    parser.add_argument("--no-cursor", action="store_true", help="page mode only")
    parser.add_argument("--churn", type=float, default=0, help="changes per minute")
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret-env", metavar="VAR",
                        help="environment variable holding the webhook signing secret")
    parser.add_argument("--api-key-env", metavar="VAR", help="env var with a fixed read_write key")
    parser.add_argument("--read-key-env", metavar="VAR", help="env var with a fixed read key")
    parser.add_argument("--latency-ms", type=float, default=0)
    for name in FAULT_FLAGS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=0)


def add_sandbox_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Mount `sandbox` on the main CLI; the command runs `run_sandbox`."""
    parser = subparsers.add_parser("sandbox", help="run a local LeadRat API with synthetic data")
    add_arguments(parser)
    parser.set_defaults(func=run_sandbox)
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    def env(name: str | None) -> str | None:
        if name is None:
            return None
        if name not in os.environ:
            raise SystemExit(f"environment variable {name} is not set")
        return os.environ[name]

    return SandboxConfig(
        leads=args.leads, seed=args.seed, plan=args.plan, rate_limit=args.rate_limit,
        daily_cap=None if args.no_daily_cap else args.daily_cap,
        window_seconds=args.window_seconds, day_seconds=args.day_seconds,
        cursor=not args.no_cursor,
        churn_per_minute=args.churn, webhook_url=args.webhook_url,
        webhook_secret=env(args.webhook_secret_env), pipelines=args.pipelines,
        host=args.host, port=args.port, api_key=env(args.api_key_env),
        read_key=env(args.read_key_env),
    )


def run_sandbox(args: argparse.Namespace) -> int:
    sandbox = Sandbox(config_from_args(args))
    faults = {name: getattr(args, name) for name in FAULT_FLAGS if getattr(args, name)}
    if args.latency_ms:
        faults["latency_ms"] = args.latency_ms
    sandbox.set_faults(**faults)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with sandbox:
        print(f"LEADRAT_BASE_URL={sandbox.base_url}")
        print(f"LEADRAT_API_KEY={sandbox.read_write_key}")
        print(f"LEADRAT_READ_KEY={sandbox.read_key}")
        print(f"LEADRAT_BEARER_TOKEN={sandbox.bearer_token}")
        print("ready", flush=True)
        stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leadrat_source.sandbox",
                                     description="Run a local LeadRat API with synthetic data.")
    add_arguments(parser)
    return run_sandbox(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

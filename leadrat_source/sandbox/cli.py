"""`leadrat sandbox ...` (and `python -m leadrat_source.sandbox ...`): serve until interrupted.

It prints, as shell lines a user can paste, the settings the connector reads
(`export SOURCES__LEADRAT__BASE_URL=...`, `export SOURCES__LEADRAT__API_KEY=...`), the
read-only key and the bearer token as commented alternatives, a `.dlt/secrets.toml`
snippet, then `# ready ...`: the keys are printed by design (that is how a user learns
them); nothing else secret is ever written out. `parse_credentials` reads these lines back
(the sandbox in a child process, `SandboxProcess`).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from leadrat_source.contract import PLANS

if TYPE_CHECKING:  # the server loads only when the command runs (see run_sandbox)
    from leadrat_source.sandbox.config import SandboxConfig
    from leadrat_source.sandbox.service import Sandbox

FAULT_FLAGS = ("error_rate", "gateway_error_rate", "spurious_429_rate", "drop_rate",
               "truncate_rate", "drift_rate", "repeat_cursor_rate",
               "cursor_cycle_rate")
FAULT_HELP = {
    "error_rate": "fraction of requests answered with a JSON 500",
    "gateway_error_rate": "fraction answered with the gateway's non-JSON 502/503/504",
    "spurious_429_rate": "fraction answered 429 although budget is left",
    "drop_rate": "fraction whose connection is dropped before an answer",
    "truncate_rate": "fraction whose body is cut short",
    "drift_rate": "fraction of list pages with an unexpected extra field (schema drift)",
    "repeat_cursor_rate": "fraction of pages asked for by cursor that give that same cursor "
                          "back as the next one (a server bug a client must not loop on)",
    "cursor_cycle_rate": "fraction of scans' last pages, asked for by cursor, that give the "
                         "scan's first cursor as the next one instead of none (a cycle)",
}
READY_LINE = "# ready: serving until Ctrl-C"

EXAMPLES = """examples:
  leadrat sandbox                                  # 10,000 leads on :8765, Growth plan
  leadrat sandbox --port 0 --leads 500 --plan free # a free port, a small Free account
  leadrat sandbox --churn 60 --error-rate 0.05     # changing data and 5% server errors

Paste the printed `export` lines into another shell, then `leadrat check` and
`leadrat load` talk to this sandbox.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--leads", type=int, default=10_000, help="synthetic leads to generate")
    parser.add_argument("--seed", type=int, default=7,
                        help="random seed: the same seed gives the same data")
    parser.add_argument("--plan", choices=sorted(PLANS), default="growth",
                        help="plan whose rate limit and daily cap apply")
    parser.add_argument("--pipelines", type=int, default=3, help="sales pipelines to generate")
    parser.add_argument("--custom-keys", type=int, default=0, metavar="N",
                        help="a wide account: N more custom field keys, ~24 per lead")
    parser.add_argument("--rate-limit", type=int,
                        help="requests per window instead of the plan's; 0 = unlimited")
    parser.add_argument("--daily-cap", type=int, default=-1,
                        help="requests per UTC day: -1 = the plan's cap, 0 or more = this cap")
    parser.add_argument("--no-daily-cap", action="store_true", help="no daily cap at all")
    parser.add_argument("--window-seconds", type=float, default=60.0,
                        help="length of the rate-limit window")
    parser.add_argument("--day-seconds", type=float, default=86_400.0,
                        help="length of the daily cap's day (shorter simulates new days)")
    parser.add_argument("--no-cursor", action="store_true",
                        help="serve page numbers only, no next_cursor (an older deployment)")
    parser.add_argument("--churn", type=float, default=0,
                        help="lead changes (updates, new leads, deletions) per minute")
    parser.add_argument("--webhook-url", help="where to POST signed lead events")
    parser.add_argument("--webhook-secret-env", metavar="VAR",
                        help="environment variable holding the webhook signing secret")
    parser.add_argument("--api-key-env", metavar="VAR", help="env var with a fixed read_write key")
    parser.add_argument("--read-key-env", metavar="VAR", help="env var with a fixed read key")
    parser.add_argument("--latency-ms", type=float, default=0, help="delay added to every answer")
    for name in FAULT_FLAGS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=0,
                            help=FAULT_HELP[name])


def add_sandbox_parser(subparsers: Any, **parser_options: Any) -> argparse.ArgumentParser:
    """Mount `sandbox` on the main CLI (`parser_options` as for the other commands); the
    command runs `run_sandbox`."""
    parser = subparsers.add_parser(
        "sandbox", help="run a local LeadRat API with synthetic data",
        description="Run a local LeadRat API with synthetic data, rate limits and faults.",
        epilog=EXAMPLES, **parser_options,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_sandbox)
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    from leadrat_source.sandbox.config import SandboxConfig

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
        custom_keys=args.custom_keys,
        host=args.host, port=args.port, api_key=env(args.api_key_env),
        read_key=env(args.read_key_env),
    )


def run_sandbox(args: argparse.Namespace) -> int:
    from leadrat_source.sandbox.service import Sandbox

    sandbox = Sandbox(config_from_args(args))
    faults = {name: getattr(args, name) for name in FAULT_FLAGS if getattr(args, name)}
    if args.latency_ms:
        faults["latency_ms"] = args.latency_ms
    sandbox.set_faults(**faults)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with sandbox:
        for line in credential_lines(sandbox):
            print(line)
        print(READY_LINE, flush=True)
        stop.wait()
    return 0


def credential_lines(sandbox: Sandbox) -> list[str]:
    """How to point the connector at this sandbox, as lines that work pasted into a shell."""
    return [
        f"# LeadRat sandbox at {sandbox.base_url}. Paste into your shell:",
        f"export SOURCES__LEADRAT__BASE_URL={sandbox.base_url}",
        f"export SOURCES__LEADRAT__API_KEY={sandbox.read_write_key}  # read_write key",
        f"# read-only key: export SOURCES__LEADRAT__API_KEY={sandbox.read_key}",
        f"# bearer token: export SOURCES__LEADRAT__BEARER_TOKEN={sandbox.bearer_token}",
        "# or put them in .dlt/secrets.toml:",
        "#   [sources.leadrat]",
        f'#   base_url = "{sandbox.base_url}"',
        f'#   api_key = "{sandbox.read_write_key}"',
    ]


_CREDENTIAL_PATTERNS = {
    "base_url": re.compile(r"^export SOURCES__LEADRAT__BASE_URL=(\S+)$"),
    "read_write_key": re.compile(r"^export SOURCES__LEADRAT__API_KEY=(\S+)  # read_write"),
    "read_key": re.compile(r"^# read-only key: export SOURCES__LEADRAT__API_KEY=(\S+)$"),
    "bearer_token": re.compile(r"export SOURCES__LEADRAT__BEARER_TOKEN=(\S+)$"),
}


def parse_credentials(lines: Iterable[str]) -> dict[str, str]:
    """The base URL, keys and token from `credential_lines`, read up to the ready line."""
    found: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if line == READY_LINE:
            return found
        for name, pattern in _CREDENTIAL_PATTERNS.items():
            if match := pattern.search(line):
                found[name] = match.group(1)
    raise RuntimeError("the sandbox stopped before it was ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leadrat_source.sandbox",
        description="Run a local LeadRat API with synthetic data.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run_sandbox(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

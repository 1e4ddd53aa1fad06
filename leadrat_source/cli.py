"""`leadrat`: the command line. It only maps flags onto the library and errors onto exit codes.

Exit codes: 0 ok; 2 usage or configuration error; 3 authentication or permission;
4 quota exhausted (state is consistent: the next run resumes); 1 anything else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from leadrat_source.errors import (
    AuthenticationFailed,
    ConfigurationError,
    LeadRatError,
    PermissionDenied,
    QuotaExhausted,
)
from leadrat_source.lead_tables import parse_timestamp
from leadrat_source.load import LoadRequest
from leadrat_source.sandbox.cli import add_sandbox_parser

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_QUOTA = 0, 1, 2, 3, 4

log = logging.getLogger("leadrat_source.cli")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for schedulers that parse logs."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if log_format == "json":
        # dlt logs through its own logger; its `runtime.log_format` makes those lines JSON too
        os.environ.setdefault("RUNTIME__LOG_FORMAT", "JSON")


def _timestamp(value: str) -> dt.datetime:
    try:
        return parse_timestamp(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 date or timestamp (e.g. 2026-01-31 or "
            "2026-01-31T12:00:00Z)"
        ) from None


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _report(lines: list[str]) -> int:
    """Print a command's closing report on stdout (logs go to stderr)."""
    for line in lines:
        print(line)
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    from leadrat_source.load import run_load

    summary = run_load(
        LoadRequest(
            destination=args.destination,
            dataset=args.dataset,
            pipeline_name=args.pipeline_name,
            resources=args.resources,
            since=args.since,
            until=args.until,
            full_refresh=args.full_refresh,
        )
    )
    return _report(summary.lines())


def cmd_reverse_sync(args: argparse.Namespace) -> int:
    from leadrat_source.reverse_sync import ReverseSyncRequest, run_reverse_sync

    summary = run_reverse_sync(
        ReverseSyncRequest(
            destination=args.destination,
            dataset=args.dataset,
            table=args.table,
            query=args.query,
            dry_run=args.dry_run,
            retry_failed=args.retry_failed,
            max_rows=args.max_rows,
            null_clears=args.null_clears,
            workers=args.workers,
            batch_rows=args.batch_rows,
        )
    )
    return _report(summary.lines())


def _target(args: argparse.Namespace) -> LoadRequest:
    return LoadRequest(
        destination=args.destination, dataset=args.dataset, pipeline_name=args.pipeline_name
    )


def cmd_check(args: argparse.Namespace) -> int:
    from leadrat_source.check import run_check

    return _report(run_check(_target(args)).lines())


def cmd_status(args: argparse.Namespace) -> int:
    from leadrat_source.status import run_status

    return _report(run_status(_target(args)).lines())


def exit_code_for(error: BaseException) -> int:
    """Map an error (possibly wrapped by dlt) onto the documented exit codes."""
    cause = _root_cause(error)
    if isinstance(cause, ConfigurationError):
        return EXIT_USAGE
    if isinstance(cause, (AuthenticationFailed, PermissionDenied)):
        return EXIT_AUTH
    if isinstance(cause, QuotaExhausted):
        return EXIT_QUOTA
    if _is_configuration_problem(cause):
        return EXIT_USAGE
    return EXIT_FAILED


def _root_cause(error: BaseException) -> BaseException:
    """The first LeadRat error in the chain dlt wraps around it, else the innermost error."""
    seen: set[int] = set()
    current: BaseException | None = error
    last = error
    while current is not None and id(current) not in seen:
        if isinstance(current, LeadRatError):
            return current
        seen.add(id(current))
        last = current
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return last


def _is_configuration_problem(error: BaseException) -> bool:
    from dlt.common.configuration.exceptions import ConfigurationException

    return isinstance(error, ConfigurationException)


def _describe(error: BaseException) -> str:
    cause = _root_cause(error)
    return str(cause) if isinstance(cause, LeadRatError) else f"{type(cause).__name__}: {cause}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadrat", description="Load LeadRat CRM data into your warehouse with dlt."
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    load = commands.add_parser("load", help="load leads, pipelines and analytics")
    _add_target_arguments(load)
    load.add_argument("--resources", type=_names, help="comma-separated: leads,pipelines,analytics")
    load.add_argument("--since", type=_timestamp, help="backfill leads updated at or after this")
    load.add_argument("--until", type=_timestamp, help="backfill leads updated before this")
    load.add_argument("--full-refresh", action="store_true",
                      help="drop the tables and state of this source and load everything again")
    load.set_defaults(func=cmd_load)

    reverse = commands.add_parser(
        "reverse-sync", help="push lead scores and fields from the warehouse into LeadRat")
    reverse.add_argument("--destination", help="profile from destinations.toml (default: duckdb)")
    reverse.add_argument("--dataset", help="dataset/schema of the input and ledger "
                         "(default: leadrat)")
    source = reverse.add_mutually_exclusive_group()
    source.add_argument("--table", help="input table in the dataset (default: lead_scores)")
    source.add_argument("--query", help="input as a SELECT in the warehouse's SQL")
    reverse.add_argument("--dry-run", action="store_true",
                         help="report what would be sent; send nothing, write no ledger")
    reverse.add_argument("--retry-failed", action="store_true",
                         help="resend rows that failed permanently even if unchanged")
    reverse.add_argument("--max-rows", type=int, help="read at most this many input rows")
    reverse.add_argument("--null-clears", action="store_true",
                         help="send null for NULL values (clears the field in LeadRat)")
    reverse.add_argument("--workers", type=int, default=8, help="concurrent requests")
    reverse.add_argument("--batch-rows", type=int, default=500,
                         help="confirmations per ledger write (a killed run resends at most "
                         "this many)")
    reverse.set_defaults(func=cmd_reverse_sync)

    check = commands.add_parser(
        "check", help="verify the API key, its scope, the plan's quota and the destination")
    _add_target_arguments(check)
    check.set_defaults(func=cmd_check)

    status = commands.add_parser(
        "status", help="last runs, the incremental cursor, row counts, last error")
    _add_target_arguments(status)
    status.set_defaults(func=cmd_status)

    add_sandbox_parser(commands)
    return parser


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a command works: the destination profile, dataset and dlt pipeline."""
    parser.add_argument("--destination", help="profile from destinations.toml (default: duckdb)")
    parser.add_argument("--dataset", help="dataset/schema name (default: leadrat)")
    parser.add_argument("--pipeline-name", help="dlt pipeline name (default: leadrat_<profile>)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        log.error("interrupted; the next run resumes where this one stopped")
        return EXIT_FAILED
    except Exception as error:  # every failure ends in a clear line and a non-zero exit
        code = exit_code_for(error)
        log.error("%s", _describe(error))
        log.debug("details", exc_info=True)
        return code


if __name__ == "__main__":
    sys.exit(main())

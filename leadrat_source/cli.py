"""`leadrat`: the command line. It only maps flags onto the library and errors onto exit codes.

Exit codes (exit_codes.py): 0 ok; 2 usage or configuration error; 3 authentication or
permission; 4 quota exhausted (the next run resumes); 130 interrupted; 1 anything else.
With `--log-format json` every command ends with one structured line (`"event":
"run_finished"`: exit code, duration and, for a load, rows and requests).

The modules that bring dlt (the load, status, check, reverse sync) and the sandbox's and
the receiver's command lines are imported when their command is parsed or run, so
`leadrat --help` and `leadrat sandbox` start without importing dlt. A flag left out
means the value in dlt's config (.dlt/*.toml or environment variables), else the default.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from leadrat_source import __version__, settings
from leadrat_source.errors import LeadRatError
from leadrat_source.exit_codes import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    exit_code_for,
    root_cause,
)
from leadrat_source.timestamps import parse_timestamp

if TYPE_CHECKING:
    from leadrat_source.load import LoadRequest

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
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


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
    from leadrat_source.load import LoadRequest, run_load
    from leadrat_source.progress import LoadProgress, LogDisplay, TerminalDisplay

    on_terminal = args.log_format == "text" and sys.stderr.isatty()
    progress = LoadProgress(TerminalDisplay() if on_terminal else LogDisplay())
    args.run_record = progress  # the closing JSON line reports its counters
    summary = run_load(
        LoadRequest(
            destination=args.destination,
            dataset=args.dataset,
            pipeline_name=args.pipeline_name,
            resources=args.resources,
            since=args.since,
            until=args.until,
            full_refresh=args.full_refresh,
        ),
        progress=progress,
    )
    return _report(summary.lines())


def cmd_reverse_sync(args: argparse.Namespace) -> int:
    from leadrat_source.reverse_sync import ReverseSyncRequest, run_reverse_sync

    given = {
        name: getattr(args, name)
        for name in ("destination", "dataset", "table", "query", "dry_run", "retry_failed",
                     "max_rows", "null_clears", "workers", "batch_rows")
    }
    # a flag left out is not passed: the request then reads dlt's config, else its default
    request = ReverseSyncRequest(**{name: value for name, value in given.items()
                                    if value is not None})
    return _report(run_reverse_sync(request).lines())


def _target(args: argparse.Namespace) -> LoadRequest:
    from leadrat_source.load import LoadRequest

    return LoadRequest(
        destination=args.destination, dataset=args.dataset, pipeline_name=args.pipeline_name
    )


def cmd_check(args: argparse.Namespace) -> int:
    from leadrat_source.check import run_check

    return _report(run_check(_target(args), probe_write=args.probe_write).lines())


def cmd_status(args: argparse.Namespace) -> int:
    from leadrat_source.status import run_status

    return _report(run_status(_target(args)).lines())


def _describe(error: BaseException) -> str:
    from dlt.common.configuration.exceptions import ConfigFieldMissingException
    from dlt.common.exceptions import MissingDependencyException

    from leadrat_source.config_errors import (
        describe_missing_configuration,
        describe_missing_dependency,
    )

    cause = root_cause(error)
    if isinstance(cause, LeadRatError):
        return str(cause)
    if isinstance(cause, ConfigFieldMissingException):
        return describe_missing_configuration(cause)
    if isinstance(cause, MissingDependencyException):
        return describe_missing_dependency(cause)
    return f"{type(cause).__name__}: {cause}"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines; an option's help shows its default when it has a value
    worth showing (not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if (
            "%(default)" not in help_text
            and default not in (None, False, True, argparse.SUPPRESS)
            and action.option_strings
        ):
            help_text += " (default: %(default)s)"
        return help_text


def _command(commands: Any, name: str, help_text: str, examples: str,
             parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """A subcommand with the shared options (also accepted after its name) and examples."""
    return commands.add_parser(  # type: ignore[no-any-return]
        name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".",
        epilog="examples:\n" + examples, formatter_class=HelpFormatter, parents=parents,
    )


def _shared_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Logging options of every command; subcommands take them with `default` SUPPRESS,
    so that `leadrat load --log-format json` and `leadrat --log-format json load` agree."""
    parser.add_argument("--log-format", choices=("text", "json"),
                        default="text" if default is None else default,
                        help="json: one JSON object per log line, for schedulers")
    parser.add_argument("-v", "--verbose", action="store_true",
                        default=False if default is None else default,
                        help="debug logging, and dlt's full detail on errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadrat", description="Load LeadRat CRM data into your warehouse with dlt.",
        epilog=MAIN_EXAMPLES, formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _shared_options(parser, default=None)
    shared = argparse.ArgumentParser(add_help=False)
    _shared_options(shared, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in (_add_load_parser, _add_reverse_sync_parser, _add_check_parser,
                       _add_status_parser, _add_sandbox_parser, _add_webhooks_parser):
        add_parser(commands, [shared])
    return parser


def _add_load_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    load = _command(commands, "load", "load leads, pipelines and analytics", LOAD_EXAMPLES,
                    parents)
    _add_target_arguments(load)
    load.add_argument("--resources", type=_names,
                      help="comma-separated subset of leads,pipelines,analytics (default: all)")
    load.add_argument("--since", type=_timestamp,
                      help="backfill leads updated at or after this (ISO date or timestamp); "
                      "leaves the incremental cursor alone")
    load.add_argument("--until", type=_timestamp,
                      help="backfill leads updated before this (default with --since: now)")
    load.add_argument("--full-refresh", action="store_true",
                      help="drop the tables and state of this source and load everything again")
    load.set_defaults(func=cmd_load)


def _add_reverse_sync_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """`reverse-sync`; a setting flag left out is read from `[leadrat.reverse_sync]`."""
    reverse = _command(commands, "reverse-sync",
                       "push lead scores and fields from the warehouse into LeadRat",
                       REVERSE_SYNC_EXAMPLES, parents)
    reverse.add_argument("--destination", help=DESTINATION_HELP)
    reverse.add_argument("--dataset",
                         help=f"dataset/schema of the input and ledger; {DATASET_DEFAULT}")
    source = reverse.add_mutually_exclusive_group()
    source.add_argument("--table", help="input table in the dataset; unset: "
                        "[leadrat.reverse_sync] table or query (default: lead_scores)")
    source.add_argument("--query", help="input as a SELECT in the warehouse's SQL")
    reverse.add_argument("--dry-run", action="store_true",
                         help="report what would be sent; send nothing, write nothing to the "
                         "warehouse")
    reverse.add_argument("--retry-failed", action="store_true",
                         help="resend rows that failed permanently even if unchanged")
    reverse.add_argument("--max-rows", type=int, help="read at most this many input rows")
    reverse.add_argument("--null-clears", action="store_true", default=None,
                         help="send null for NULL values (clears the field in LeadRat); "
                         "unset: [leadrat.reverse_sync] null_clears")
    reverse.add_argument("--workers", type=int, help="concurrent requests; unset: "
                         f"[leadrat.reverse_sync] workers (default: "
                         f"{settings.DELIVERY_WORKERS})")
    reverse.add_argument("--batch-rows", type=int,
                         help="confirmations per ledger write (a killed run resends at most "
                         "this many); unset: [leadrat.reverse_sync] batch_rows (default: "
                         f"{settings.REVERSE_SYNC_BATCH_ROWS})")
    reverse.set_defaults(func=cmd_reverse_sync)


def _add_check_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    check = _command(commands, "check",
                     "verify the API key, the plan's quota and the destination (reads only)",
                     CHECK_EXAMPLES, parents)
    _add_target_arguments(check)
    check.add_argument("--probe-write", action="store_true",
                       help="also learn the key's scope by sending one PUT to a lead that "
                       "cannot exist (changes nothing; shows in LeadRat's audit log)")
    check.set_defaults(func=cmd_check)


def _add_status_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    status = _command(commands, "status",
                      "last runs, the incremental cursor, row counts, last error",
                      STATUS_EXAMPLES, parents)
    _add_target_arguments(status)
    status.set_defaults(func=cmd_status)


def _add_sandbox_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    from leadrat_source.sandbox.cli import add_sandbox_parser

    add_sandbox_parser(commands, parents=parents, formatter_class=HelpFormatter)


def _add_webhooks_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    from leadrat_source.webhooks.command import add_webhooks_parser

    add_webhooks_parser(commands, parents=parents, formatter_class=HelpFormatter)


MAIN_EXAMPLES = """examples:
  leadrat sandbox                  # a local LeadRat API; prints the settings to export
  leadrat check                    # key, scope, plan, quota and destination
  leadrat load                     # into ./leadrat_warehouse.duckdb
  leadrat load --destination postgres --log-format json
  leadrat status

`leadrat COMMAND --help` shows each command's options. Settings (API key, base URL,
credentials) come from .dlt/secrets.toml or SOURCES__LEADRAT__* / DESTINATION__* variables;
the destination, dataset and reverse sync from [leadrat] in .dlt/config.toml or LEADRAT__*.
Exit codes: 0 ok, 2 usage or configuration, 3 authentication, 4 daily quota spent
(the next run resumes), 130 interrupted, 1 anything else.
"""
LOAD_EXAMPLES = """\
  leadrat load                                     # incremental, into DuckDB
  leadrat load --destination postgres              # DESTINATION__POSTGRES__CREDENTIALS=...
  leadrat load --resources leads --since 2026-01-01 --until 2026-02-01   # a backfill
  leadrat load --full-refresh                      # drop and reload everything
"""
REVERSE_SYNC_EXAMPLES = """\
  leadrat reverse-sync --dry-run                   # what would be sent
  leadrat reverse-sync                             # push the table lead_scores
  leadrat reverse-sync --destination postgres --query "select id as lead_id, p*100 as score from ml.preds"
"""
CHECK_EXAMPLES = """\
  leadrat check
  leadrat check --destination postgres
  leadrat check --probe-write              # also the key's scope, with one harmless PUT
"""
STATUS_EXAMPLES = """\
  leadrat status
  leadrat status --destination postgres --pipeline-name leadrat_nightly
"""


#: Where a command works when its flags are left out: `[leadrat]` of dlt's config
#: (destinations.py), the same for the CLI, cron and the Airflow DAG.
DESTINATION_HELP = ("profile from destinations.toml; unset: [leadrat] destination of dlt's "
                    "config, LEADRAT__DESTINATION (default: duckdb)")
DATASET_DEFAULT = ("unset: [leadrat] dataset, LEADRAT__DATASET, else the profile's "
                   "(default: leadrat)")


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a command works: the destination profile, dataset and dlt pipeline."""
    parser.add_argument("--destination", help=DESTINATION_HELP)
    parser.add_argument("--dataset", help=f"dataset/schema name; {DATASET_DEFAULT}")
    parser.add_argument("--pipeline-name", help="dlt pipeline name (default: leadrat_<profile>)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.verbose)
    started = time.monotonic()
    code = _run(args)
    if args.log_format == "json":
        _log_run_finished(args, code, time.monotonic() - started)
    if code == EXIT_INTERRUPTED:
        # Exit now: threads of the interrupted run may be held by the rate limiter until
        # its window resets, and nothing they hold is needed (each load commits its state).
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


def _run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as error:  # every failure ends in a clear line and a non-zero exit
        code = exit_code_for(error)
        if code == EXIT_INTERRUPTED:  # Ctrl-C inside dlt, which wraps it
            return _interrupted()
        log.error("%s", _describe(error))
        log.debug("details", exc_info=True)
        return code


def _interrupted() -> int:
    log.error("interrupted; the next run resumes where this one stopped")
    return EXIT_INTERRUPTED


def _log_run_finished(args: argparse.Namespace, code: int, seconds: float) -> None:
    """The closing JSON line, so a scheduler's log tells runs apart and can be summed."""
    fields: dict[str, Any] = {
        "event": "run_finished", "command": args.command, "exit_code": code,
        "duration_seconds": round(seconds, 3),
    }
    run_record = getattr(args, "run_record", None)  # set by commands that report more
    if run_record is not None:
        fields.update(run_record.record())
    log.log(logging.INFO if code == EXIT_OK else logging.ERROR,
            "%s finished with exit code %d", args.command, code, extra={"fields": fields})


if __name__ == "__main__":
    sys.exit(main())

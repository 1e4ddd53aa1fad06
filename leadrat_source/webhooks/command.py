"""`leadrat webhooks serve`: the flags, mapped onto `server.serve`.

Kept apart from `server` so that `leadrat` starts without the receiver's optional
dependencies (`pip install 'leadrat-source[webhooks]'`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from leadrat_source.errors import ConfigurationError


def run_serve(args: argparse.Namespace) -> int:
    try:
        from leadrat_source.webhooks.server import ServeOptions, serve
    except ImportError as error:
        raise ConfigurationError(
            f"the webhook receiver needs {error.name}: pip install 'leadrat-source[webhooks]'"
        ) from None
    return serve(ServeOptions(host=args.host, port=args.port, destination=args.destination,
                              dataset=args.dataset, journal=args.journal))


EXAMPLES = """examples:
  SOURCES__LEADRAT__WEBHOOK_SECRET=whsec_... leadrat webhooks serve --port 8787
  leadrat webhooks serve --destination postgres --dataset crm    # DESTINATION__POSTGRES__CREDENTIALS
  leadrat webhooks serve --journal /var/lib/leadrat/webhooks.sqlite
"""


def add_webhooks_parser(subparsers: Any, **parser_options: Any) -> argparse.ArgumentParser:
    """Mount `webhooks serve` on the main CLI (`parser_options` as for the other commands)."""
    parser = subparsers.add_parser("webhooks", help="receive LeadRat's webhooks",
                                   description="Receive LeadRat's webhooks.", **parser_options)
    commands = parser.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="verify, journal and load lead events into the warehouse",
        description="Verify LeadRat's signed lead events, acknowledge each once it is on "
        "local disk, and load them into the warehouse in micro-batches.",
        epilog=EXAMPLES, **parser_options)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    serve.add_argument("--destination", help="profile from destinations.toml (default: duckdb)")
    serve.add_argument("--dataset", help="dataset/schema name (default: leadrat)")
    serve.add_argument("--journal", type=Path,
                       help="journal file (default: one per profile and dataset under "
                       "$DLT_DATA_DIR/webhooks)")
    serve.set_defaults(func=run_serve)
    return parser

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


def add_webhooks_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Mount `webhooks serve` on the main CLI."""
    parser = subparsers.add_parser("webhooks", help="receive LeadRat's webhooks")
    commands = parser.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve", help="verify, journal and load lead events into the warehouse")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    serve_parser.add_argument("--destination",
                              help="profile from destinations.toml (default: duckdb)")
    serve_parser.add_argument("--dataset", help="dataset/schema name (default: leadrat)")
    serve_parser.add_argument("--journal", type=Path,
                              help="journal file (default: one per profile and dataset under "
                              "DLT_DATA_DIR/webhooks)")
    serve_parser.set_defaults(func=run_serve)
    return parser

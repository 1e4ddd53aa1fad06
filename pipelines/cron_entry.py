"""What the cron scripts share: find the project without relying on the working
directory, then run one `leadrat` subcommand and return its exit code.

cron starts jobs in $HOME with a bare environment, so nothing may depend on where the
job was started: dlt looks for `.dlt/` in $DLT_PROJECT_DIR and writes a relative DuckDB
file into $DLT_LOCAL_DIR, and `destinations.toml` is found through $DLT_PROJECT_DIR
(leadrat_source/destinations.py). Both default to this checkout; a value already in the
environment wins. The working directory itself is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def run_leadrat(command: str, argv: Sequence[str]) -> int:
    """Run `leadrat <command> <argv>` with the project's configuration; its exit code."""
    os.environ.setdefault("DLT_PROJECT_DIR", str(PROJECT_DIR))
    os.environ.setdefault("DLT_LOCAL_DIR", str(PROJECT_DIR))
    # imported only now, so dlt sees the directories above from its first import on
    from leadrat_source.cli import main

    return main([command, *argv])

"""Run `leadrat load` from cron (or any scheduler that starts a command).

    /path/to/checkout/.venv/bin/python /path/to/checkout/pipelines/load_leadrat.py \
        --log-format json [any `leadrat load` flag]

Works from any working directory (see cron_entry.py); exits with the CLI's code:
0 ok, 2 configuration, 3 authentication, 4 quota exhausted, 1 anything else.
pipelines/crontab.example shows a complete schedule.
"""

from __future__ import annotations

import sys

from cron_entry import run_leadrat

if __name__ == "__main__":
    sys.exit(run_leadrat("load", sys.argv[1:]))

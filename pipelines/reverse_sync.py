"""Run `leadrat reverse-sync` from cron: push warehouse lead scores back into LeadRat.

    /path/to/checkout/.venv/bin/python /path/to/checkout/pipelines/reverse_sync.py \
        --log-format json [any `leadrat reverse-sync` flag]

Works from any working directory (see cron_entry.py); exits with the CLI's code:
0 ok, 2 configuration, 3 authentication, 4 quota exhausted, 1 anything else.
pipelines/crontab.example runs it after each load.
"""

from __future__ import annotations

import sys

from cron_entry import run_leadrat

if __name__ == "__main__":
    sys.exit(run_leadrat("reverse-sync", sys.argv[1:]))

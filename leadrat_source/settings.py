"""Defaults of the connector, in one place so they are easy to find and to document.

Every layer takes its defaults from here (the client, the retry policy, the scan, the dlt
source, the reverse sync), so a default is changed once. Plain values, no dlt: the client
layer imports them too.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

#: Largest page the API serves; fewer requests per lead.
PER_PAGE: Final = 100
#: Where the first incremental run starts when nothing says otherwise.
DEFAULT_INITIAL_UPDATED_AT: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
#: Each incremental run re-reads this many seconds before the last `updated_at` it saw, so
#: an update committed late (or in the same millisecond as the last one seen) is not missed.
DEFAULT_LOOKBACK_SECONDS: Final = 60.0
#: Concurrent time slices of one large scan; the shared pacer keeps them within budget.
SCAN_WORKERS: Final = 8
#: Concurrent rows in delivery to LeadRat during a reverse sync (threads sharing one
#: paced client).
DELIVERY_WORKERS: Final = 8
#: Rows per Arrow table handed to dlt: large enough to amortise per-item overhead in dlt,
#: small enough to keep memory flat.
LEADS_PER_BATCH: Final = 5_000
#: A first load of more leads than this runs as several loads (each extract, normalize
#: and load) of about this many, so memory stays flat and progress is saved as it goes.
MAX_LEADS_PER_RUN: Final = 100_000
#: Per request: seconds before a request times out, and tries before giving up.
REQUEST_TIMEOUT_SECONDS: Final = 30.0
MAX_ATTEMPTS: Final = 8
#: Exponential backoff between attempts: the first step, and the longest (before jitter).
BACKOFF_BASE_SECONDS: Final = 0.5
BACKOFF_CAP_SECONDS: Final = 30.0
#: A rate limit that resets sooner than this is waited for; a later reset (the daily cap)
#: stops the run with QuotaExhausted instead, what was read being loaded.
MAX_WAIT_SECONDS: Final = 120.0
#: Analytics cover this many days up to and including the snapshot date.
ANALYTICS_DAYS: Final = 30
#: A long scan logs how far it got this often.
PROGRESS_SECONDS: Final = 5.0
#: Reverse sync: how often confirmations are written to the ledger (every so many rows,
#: or seconds): a killed run resends at most one batch (plus the rows in flight).
REVERSE_SYNC_BATCH_ROWS: Final = 500
REVERSE_SYNC_BATCH_SECONDS: Final = 5.0
DATASET_NAME: Final = "leadrat"
#: A load's pipeline is `<prefix>_<destination profile>`, so each warehouse keeps its
#: own incremental state; the reverse sync's ledger pipeline likewise.
LOAD_PIPELINE_PREFIX: Final = "leadrat"
REVERSE_SYNC_PIPELINE_PREFIX: Final = "leadrat_reverse_sync"

"""Reverse sync: push lead scores (and status, custom fields, tags, stages) computed in
the warehouse back into LeadRat — `run_reverse_sync(ReverseSyncRequest(...))`.

Data flow: warehouse → `reader` (Arrow chunks) → `columns` (row → LeadChange + hash) →
diff against the `ledger` → `delivery` (concurrent, paced client) → confirmations back
into the ledger in batches. Update-only: it never creates leads.
"""

from leadrat_source.reverse_sync.sync import (
    ReverseSyncRequest,
    ReverseSyncSummary,
    run_reverse_sync,
)

__all__ = ["ReverseSyncRequest", "ReverseSyncSummary", "run_reverse_sync"]

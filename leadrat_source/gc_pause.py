"""Fewer cyclic garbage collections while a load, or the webhook receiver, runs.

A load allocates a few container objects per lead (the parsed JSON's dicts and lists,
the columns built from them), almost all freed by reference counting moments later. With
Python's default thresholds the cyclic collector still runs a young pass every 700
allocations and, every few hundred thousand, a full pass over every long-lived object
(130k after importing dlt, pyarrow and DuckDB, more as the run goes). Measured with
`gc.callbacks` at 50k and 200k leads, that is 14-20% of the load process's CPU, and the
load is CPU-bound on one thread. Freezing the objects that exist before the run and
raising the first threshold removes nearly all of it. Both are undone when the last run
in the process ends, so a long-lived caller (an Airflow worker, a script looping over
loads) gets its collector back as it was, and garbage from before the run is collectable
again.

The webhook receiver runs its server in the same block: each delivery allocates a few
dozen short-lived containers, and with dlt imported every full pass walked the whole
start-up heap; the collector took ~15% of the server's CPU per acknowledgement.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Allocations between two young-generation passes during a run (Python's default is
#: 700): cycles are still collected, in rarer passes.
RUN_GEN0_THRESHOLD = 10_000

_lock = threading.Lock()
_runs = 0
_saved_thresholds: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Freeze the heap as it is and collect less often until the block ends.

    Runs may overlap (loads in threads): the first to start saves the collector's
    settings and the last to end restores them. A first threshold of 0 (the caller
    switched collection off) is left alone.
    """
    global _runs, _saved_thresholds
    with _lock:
        if _runs == 0:
            _saved_thresholds = gc.get_threshold()
            gc.freeze()
            if _saved_thresholds[0]:
                gc.set_threshold(max(RUN_GEN0_THRESHOLD, _saved_thresholds[0]),
                                 *_saved_thresholds[1:])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_saved_thresholds)
                gc.unfreeze()

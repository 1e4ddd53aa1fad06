"""What the sandbox itself counted (its /_sandbox/stats), the oracle for request counts and
timing: never our client's own counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LIST_ROUTE = "GET /leads"


def served(server: Any) -> dict[str, int]:
    """The sandbox's counts so far: API requests, list pages, 429s and injected faults."""
    stats = server.stats()
    return {"requests": stats["requests"], "pages": stats["by_route"].get(LIST_ROUTE, 0),
            "429s": stats["rate_limited"], "faults": stats["faults_injected"]}


def served_during(server: Any, run: Callable[[], Any]) -> dict[str, int]:
    """The sandbox's counts of what `run()` asked for."""
    before = served(server)
    run()
    after = served(server)
    return {name: after[name] - before[name] for name in after}


class Arrivals:
    """When the sandbox received each request of a run, sampled every `every` seconds on
    the server's side: `times[i]` is when the (i+1)-th request had arrived."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @property
    def span(self) -> float:
        """Seconds from the first request to the last one."""
        return self.times[-1] - self.times[0]


@contextmanager
def arrivals(server: Any, every: float = 0.005, route: str | None = None
             ) -> Iterator[Arrivals]:
    """Record request arrivals while the body runs (a request counts when it arrives,
    before the sandbox's latency and its answer); only those of `route` if given."""
    recorded = Arrivals()

    def arrived() -> int:
        stats = server.stats()
        return int(stats["by_route"].get(route, 0) if route else stats["requests"])

    before = arrived()
    done = threading.Event()

    def sample() -> None:
        while True:
            stop = done.is_set()
            count = arrived() - before
            now = time.monotonic()
            recorded.times.extend([now] * (count - len(recorded.times)))
            if stop:
                return
            done.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield recorded
    finally:
        done.set()
        sampler.join()

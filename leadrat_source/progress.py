"""How a load is going while it runs: leads read of the expected total, rate, time left,
and how long the rate limit has held the run back.

On a terminal a rich progress bar (rich comes with dlt); elsewhere (cron, CI, Airflow) a
log line every few seconds. Both read the same counters: the running lead scan's (handed
over by the source through `RunNotes`) and the client's pacer.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from leadrat_source import settings

if TYPE_CHECKING:
    from leadrat_source.client import LeadRatClient
    from leadrat_source.load import LoadSummary
    from leadrat_source.run_report import RunNotes

log = logging.getLogger("leadrat_source.progress")


@dataclass(frozen=True)
class ProgressSnapshot:
    """The load's counters at one instant."""

    read: int
    #: leads the API said the window holds (None until the first page is in)
    expected: int | None
    seconds: float
    rate_limit_wait: float

    @property
    def rate(self) -> float:
        """Leads per second so far."""
        return self.read / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        if self.expected is None or not self.rate:
            return None
        return max(self.expected - self.read, 0) / self.rate


class ProgressDisplay(Protocol):
    def show(self, snapshot: ProgressSnapshot) -> None: ...

    def close(self, snapshot: ProgressSnapshot) -> None: ...


class LoadProgress:
    """Follows the parts of one load (`follow` at the start of each dlt run) and shows
    their counters every `interval` seconds from a background thread. `summary` is the
    load's summary so far, kept up to date by the load (also when it fails)."""

    def __init__(self, display: ProgressDisplay, interval: float = 0.25) -> None:
        self._display = display
        self._interval = interval
        self._started = time.monotonic()
        self._notes: RunNotes | None = None
        self._client: LeadRatClient | None = None
        self._read_before = 0  # leads read by the load's earlier parts
        self.summary: LoadSummary | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leadrat-progress", daemon=True)

    def follow(self, notes: RunNotes, client: LeadRatClient) -> None:
        """A new part of the load starts: its scan reports through `notes`."""
        if self._notes is not None and self._notes.scan is not None:
            self._read_before += self._notes.scan.leads
        self._notes, self._client = notes, client

    def snapshot(self) -> ProgressSnapshot:
        scan = self._notes.scan if self._notes is not None else None
        read = self._read_before + (scan.leads if scan else 0)
        expected = None
        if scan is not None and scan.expected is not None:
            # leads changed during the scan can make the API's count a little low
            expected = max(self._read_before + scan.expected, read)
        return ProgressSnapshot(
            read=read,
            expected=expected,
            seconds=time.monotonic() - self._started,
            rate_limit_wait=self._client.rate_limit_wait_seconds if self._client else 0.0,
        )

    def record(self) -> dict[str, Any]:
        """What the load did so far (all of it once it ended, even by an error), as the
        fields of a structured log line."""
        fields: dict[str, Any] = self.summary.record() if self.summary is not None else {}
        fields["leads_read"] = self.snapshot().read
        if self._client is not None:  # the live counters, also of a part that failed
            stats = self._client.stats.snapshot()
            fields.update(
                requests=stats.requests, retries=stats.retries, rate_limited=stats.rate_limited,
                rate_limit_wait_seconds=round(self._client.rate_limit_wait_seconds, 3),
            )
        return fields

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._display.show(self.snapshot())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._display.close(self.snapshot())


class LogDisplay:
    """A log line every `every` seconds, for logs that are read later."""

    def __init__(self, every: float = settings.PROGRESS_SECONDS) -> None:
        self._every = every
        self._next = time.monotonic() + every

    def show(self, snapshot: ProgressSnapshot) -> None:
        if time.monotonic() < self._next or not snapshot.read:
            return
        self._next = time.monotonic() + self._every
        if snapshot.expected:
            done = f"{snapshot.read:,} of about {snapshot.expected:,} read " \
                   f"({100 * snapshot.read // snapshot.expected}%)"
        else:
            done = f"{snapshot.read:,} read"
        left = snapshot.seconds_left
        log.info(
            "leads: %s, %.0f/s, %s; rate-limit wait %.1f s",
            done, snapshot.rate,
            f"about {left:.0f} s left" if left is not None else "time left unknown",
            snapshot.rate_limit_wait,
        )

    def close(self, snapshot: ProgressSnapshot) -> None:
        """Nothing: the closing summary follows."""


class TerminalDisplay:
    """A rich progress bar on stderr. Log lines printed meanwhile appear above it: rich
    redirects stderr while the bar is live, and the log handlers are pointed there.
    Rate and time left are averages over the whole load: rich's own estimates look at
    the last seconds only, which a rate-limit window's pause leaves empty."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("leads"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:,.0f} leads/s  ETA {task.fields[left]}  "
                       "rate-limit wait {task.fields[wait]:.1f}s"),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("leads", total=None, rate=0.0, left="?", wait=0.0)
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def show(self, snapshot: ProgressSnapshot) -> None:
        if not self._progress.live.is_started:
            self._progress.start()
            self._redirect_log_handlers()
        left = snapshot.seconds_left
        self._progress.update(
            self._task, completed=snapshot.read, total=snapshot.expected, rate=snapshot.rate,
            left="?" if left is None else f"{left:.0f}s", wait=snapshot.rate_limit_wait,
        )

    def close(self, snapshot: ProgressSnapshot) -> None:
        if self._progress.live.is_started:
            self.show(snapshot)
            self._progress.stop()
        for handler, stream in self._handlers:
            handler.setStream(stream)

    def _redirect_log_handlers(self) -> None:
        for handler in logging.getLogger().handlers:
            proxied = getattr(sys.stderr, "rich_proxied_file", None)
            if isinstance(handler, logging.StreamHandler) and handler.stream is proxied:
                self._handlers.append((handler, handler.setStream(sys.stderr)))

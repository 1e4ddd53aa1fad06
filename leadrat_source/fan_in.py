"""Several reader threads, one consuming thread: the lead scan's slices are read
concurrently, and what they read reaches the caller's thread (dlt's) in arrival order.

The buffer between them is bounded, so readers wait while the consumer is busy (memory
stays bounded); leaving the `with` block stops them.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


class FanIn(Generic[T]):
    """Runs readers on a thread pool and hands what they yield to the consuming thread.

        with FanIn[list[Lead]](workers=4, buffered=32, name="leadrat-scan") as fan_in:
            reader_id = fan_in.start(lambda: read(part))
            reader_id, message = fan_in.get()

    A message is an item a reader yielded, None when the reader is done, or the exception
    that ended it (to be raised or handled by the consumer).
    """

    def __init__(self, workers: int, buffered: int, name: str) -> None:
        self._messages: queue.Queue[tuple[int, T | BaseException | None]] = queue.Queue(buffered)
        self._stop = threading.Event()
        self._ids = itertools.count()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=name)

    def start(self, reader: Callable[[], Iterable[T]]) -> int:
        """Run `reader` on a thread of the pool; its messages carry the id returned."""
        reader_id = next(self._ids)
        self._executor.submit(self._run, reader_id, reader)
        return reader_id

    def get(self) -> tuple[int, T | BaseException | None]:
        """The next message of any reader, with the reader's id (waits for one)."""
        return self._messages.get()

    def _run(self, reader_id: int, reader: Callable[[], Iterable[T]]) -> None:
        try:
            for item in reader():
                if self._stop.is_set():
                    return
                self._put((reader_id, item))
            self._put((reader_id, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            self._put((reader_id, error))

    def _put(self, message: tuple[int, T | BaseException | None]) -> None:
        while not self._stop.is_set():
            try:
                self._messages.put(message, timeout=0.2)
                return
            except queue.Full:
                continue

    def __enter__(self) -> FanIn[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        # Ctrl-C does not wait for readers held back by the rate limit (up to a window)
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)
        self._executor.shutdown(wait=not interrupted, cancel_futures=True)

"""The threads around the runner: a producer that reads ahead and a consumer that writes behind.

Bounded queues between them keep memory flat; an error in either thread re-raises on the caller's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
QUEUE_FRAMES = 4  # per stage: enough to hide jitter, small enough for 4K frames


class ReadAhead(Generic[T]):
    """Run an iterator in a thread and hand its items over a bounded queue; errors re-raise here."""

    def __init__(self, items: Iterable[T], name: str, maxsize: int = QUEUE_FRAMES) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    break
            else:
                self._put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    def _put(self, message: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class WriteBehind(Generic[T]):
    """The consumer twin of ``ReadAhead``: ``put`` items, a thread applies ``consume`` in order."""

    def __init__(self, consume: Callable[[T], None], name: str, maxsize: int = QUEUE_FRAMES) -> None:
        self._items: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize)
        self._consume = consume
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            more, item = self._items.get()
            if not more:
                return
            if self._error is None:
                try:
                    self._consume(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised on the producer's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        self._raise()
        self._items.put((True, item))

    def stop(self) -> None:
        """Let the thread finish what is queued and end (idempotent; errors stay for ``close``)."""
        if self._thread.is_alive():
            self._items.put((False, None))
            self._thread.join()

    def close(self) -> None:
        self.stop()
        self._raise()

"""Group commit: concurrent requests of one instance share one round trip, without waiting for each other.

A function instance serves many requests at once (gen2 concurrency). When each
of them writes to Firestore and publishes to Pub/Sub on its own, most of the
CPU goes to per-call overhead: on the emulators one write per commit costs
~3.8 ms of CPU, eight per commit ~0.7 ms each (see bench/collect_bench.py).

:class:`GroupCommit` turns concurrent ``submit`` calls into batches with no
timer: the first caller to find nobody flushing becomes the leader and flushes
what is queued; whoever arrives meanwhile queues, and when the flush is done the
leader hands the lead to the oldest queued caller, who flushes everything that
queued up behind it. At low load every batch has one item and nothing waits;
under load batches grow by themselves. No background thread: Cloud Functions
only gives an instance CPU while a request is in flight, and here every flush
runs on the thread of a request that is waiting for it.

Each caller gets its own result or its own exception; a caller that was not
taken into a flush within ``wait_timeout`` seconds leaves the queue and gets
:class:`TimeoutError` (its item is then never flushed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot(Generic[Item, Result]):
    __slots__ = ("item", "wake", "lead", "settled", "result", "error")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.wake = threading.Event()
        self.lead = False
        self.settled = False
        self.result: Result | None = None
        self.error: BaseException | None = None

    def settle(self, outcome: Result | BaseException) -> None:
        if isinstance(outcome, BaseException):
            self.error = outcome
        else:
            self.result = outcome
        self.settled = True
        self.wake.set()


class GroupCommit(Generic[Item, Result]):
    """``flush(items)`` returns one result or exception per item, in order; it runs on a caller's thread."""

    def __init__(
        self,
        flush: Callable[[list[Item]], Sequence[Result | BaseException]],
        max_items: int = 100,
        wait_timeout: float = 30.0,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._flush = flush
        self.max_items = max_items
        self.wait_timeout = wait_timeout
        self._lock = threading.Lock()
        self._queue: list[_Slot[Item, Result]] = []
        self._busy = False
        # Sizes of the flushed batches, for benchmarks and tests (a counter, not a log).
        self.flushes = 0
        self.items_flushed = 0

    def submit(self, item: Item) -> Result:
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            if not self._busy:
                self._busy = True
                slot.lead = True
        deadline = time.monotonic() + self.wait_timeout
        extended = False
        while not (slot.lead or slot.settled):
            if slot.wake.wait(max(0.0, deadline - time.monotonic())):
                continue
            with self._lock:
                if slot.lead or slot.settled:
                    continue
                if slot in self._queue:
                    self._queue.remove(slot)
                    raise TimeoutError(f"not flushed within {self.wait_timeout:g} s")
            if extended:
                raise TimeoutError(f"the flush holding this item did not finish within {self.wait_timeout:g} s")
            # Already taken into a flush, whose own calls are bounded: give it one more period.
            deadline, extended = time.monotonic() + self.wait_timeout, True
        if not slot.settled:
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch = self._queue[: self.max_items]
            del self._queue[: self.max_items]
        outcomes: list[Result | BaseException]
        try:
            outcomes = list(self._flush([slot.item for slot in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"flush returned {len(outcomes)} outcomes for {len(batch)} items")
        except BaseException as exc:  # handed to every caller of the batch: nobody is left waiting
            outcomes = [exc] * len(batch)
        with self._lock:
            self.flushes += 1
            self.items_flushed += len(batch)
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.wake.set()
            else:
                self._busy = False
        for slot, outcome in zip(batch, outcomes, strict=True):
            slot.settle(outcome)

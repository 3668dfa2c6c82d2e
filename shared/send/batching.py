"""Micro-batching: concurrent invocations of one instance share one batch, each waiting for its own outcome.

Separate because it is pure concurrency (threads, a condition, a clock) with
no Firestore or TikTok in it: :func:`batch_due` is the rule when a batch
goes, :class:`Dispatcher` follows it and hands each batch to a processor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from shared.destinations import ClaimKey
from shared.domain.models import Envelope
from shared.infra import log
from shared.infra.metrics import COUNTERS, Counters
from shared.outcome import Kind, Outcome
from shared.send.process import event_details


def batch_due(
    *,
    opened: float,
    last_join: float,
    size: int,
    in_flight: bool,
    answered_at: float,
    expected: int,
    wait: float,
    idle: float,
    hold: float,
) -> float:
    """When an open batch goes (a ``time.monotonic()`` value; one in the past: now).

    Every push holds one of the instance's threads until it is answered, so
    under load the pushes that could join this batch are mostly those whose
    invocations a batch in flight still holds. While one is in flight, this
    batch keeps accepting (for up to ``hold``, at least ``wait``) instead of
    going with the few threads that happened to be free. Once one was answered
    (while this batch gathered, or at most ``wait`` before it opened), the next
    pushes of the ``expected`` invocations it found in the instance are
    coming: until it holds that many, the batch keeps accepting while they
    come within the idle gap, up to the same limit. Otherwise the rule is the
    plain one: ``wait`` at most (counted again from an answer), and a lone
    event (nobody joining) goes after the idle gap. ``idle`` 0 always waits
    the full ``wait``.

    ``expected`` is 0 after an answer that found the open batch still being
    joined (within the idle gap): an open stream, whose pushes come whether or
    not a batch was answered (:class:`Dispatcher` decides). Waiting for as many
    joins as the answered batch held would then stretch every batch by the one
    before it, by a flight each round, until every batch waited the whole hold.
    """
    limit = opened + max(wait, hold)
    if in_flight:
        return limit
    if idle > 0 and size < expected and answered_at >= opened - wait:
        return min(limit, max(last_join, answered_at) + idle)
    due = min(limit, max(opened, answered_at) + wait)
    return min(due, last_join + idle) if idle > 0 else due


class _Item:
    __slots__ = ("envelope", "message_id", "done", "outcome")

    def __init__(self, envelope: Envelope, message_id: str | None) -> None:
        self.envelope = envelope
        self.message_id = message_id
        self.done = threading.Event()
        self.outcome: Outcome | None = None

    def resolve(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.done.set()


class _Batch:
    __slots__ = ("items", "closed", "opened", "last_join")

    def __init__(self, now: float) -> None:
        self.items: list[_Item] = []
        self.closed = False
        self.opened = now
        self.last_join = now


class Dispatcher:
    """Coalesces concurrent invocations of one instance into batches; each waits for its own outcome.

    A batch goes at ``SENDER_BATCH_MAX_EVENTS`` or ``SENDER_BATCH_WAIT_MS``, sooner
    when nobody joined for ``SENDER_BATCH_IDLE_MS``, later (up to
    ``SENDER_BATCH_HOLD_MS``) while the invocations a batch in flight holds are
    still to come back. A copy of an event already in flight in this instance
    waits for that one instead. No background thread: the first invocation of
    a batch waits for company (:func:`batch_due`, or until ``max_events``
    joined), then processes the batch for everyone. Batching is off when
    ``max_events`` is 1 or ``wait_ms`` is 0.
    """

    def __init__(
        self,
        process: Callable[[Sequence[tuple[Envelope, str | None]]], list[Outcome]],
        max_events: int,
        wait_ms: int,
        result_timeout: float,
        counters: Counters = COUNTERS,
        idle_ms: int = 0,
        hold_ms: int = 0,
        key: Callable[[Envelope], ClaimKey] = Envelope.claim_key,
    ) -> None:
        self._process = process
        self.key = key  # the processor's claim key: copies of one event share it
        self.max_events = max_events
        self.wait_seconds = wait_ms / 1000
        self.idle_seconds = idle_ms / 1000
        self.hold_seconds = hold_ms / 1000
        self.batching = max_events > 1 and wait_ms > 0
        self.result_timeout = result_timeout
        self.counters = counters
        self._lock = threading.Lock()
        # Wakes a gathering leader when its batch fills or a batch in flight is answered.
        self._changed = threading.Condition(self._lock)
        self._open: _Batch | None = None
        self._inflight: dict[ClaimKey, _Item] = {}
        self._processing = 0  # batches between their close and their outcomes
        self._answered_at = float("-inf")  # when a batch's outcomes last freed its invocations
        self._expected = 0  # how many invocations the instance was serving then (open and in flight)

    def submit(self, envelope: Envelope, message_id: str | None = None) -> Outcome:
        key = self.key(envelope)
        with self._lock:
            primary = self._inflight.get(key)
            if primary is None:
                item = _Item(envelope, message_id)
                self._inflight[key] = item
                batch, lead = self._enqueue(item)
        if primary is not None:
            self.counters.add("joined_in_flight")
            outcome = self._wait(primary)
            if outcome.retry:
                return outcome
            reason = f"copy of an event handled concurrently in this instance ({outcome.kind})"
            return Outcome(Kind.DUPLICATE, reason, envelope.event_id, event_details(envelope))
        if lead:
            self._lead(batch)
        return self._wait(item)

    def _enqueue(self, item: _Item) -> tuple[_Batch, bool]:
        now = time.monotonic()
        if not self.batching:
            alone = _Batch(now)
            alone.items.append(item)
            return alone, True
        lead = False
        batch = self._open
        if batch is None:
            batch = self._open = _Batch(now)
            lead = True
        batch.items.append(item)
        batch.last_join = now
        if len(batch.items) >= self.max_events:
            self._close(batch)
        elif len(batch.items) == self._expected:
            self._changed.notify_all()  # the leader may go now (batch_due)
        return batch, lead

    def _close(self, batch: _Batch) -> None:
        batch.closed = True
        if self._open is batch:
            self._open = None
        self._changed.notify_all()

    def _lead(self, batch: _Batch) -> None:
        if self.batching:
            self._gather(batch)
        with self._lock:  # closed and counted in flight at once: the next batch's leader sees either both or neither
            self._close(batch)
            self._processing += 1
        items = batch.items
        try:
            outcomes = self._process([(i.envelope, i.message_id) for i in items])
            for item, outcome in zip(items, outcomes, strict=True):
                item.resolve(outcome)
        except Exception as exc:
            log.error("batch failed", error=type(exc).__name__, detail=str(exc)[:300], events=len(items))
            for item in items:
                item.resolve(Outcome(Kind.RETRY, f"sender error ({type(exc).__name__})", item.envelope.event_id))
        finally:
            with self._lock:
                self._processing -= 1
                self._answered_at = now = time.monotonic()
                # A closed loop's pushes wait for their answers: while this batch was in flight, the next one
                # stopped growing, and the invocations freed now are what it waits for (batch_due). Pushes
                # that kept joining it up to the answer are an open stream instead: none of them waited for
                # this answer, so it frees nobody worth waiting for.
                following = self._open
                stream = following is not None and now - following.last_join <= self.idle_seconds
                self._expected = 0 if stream else len(self._inflight)
                for item in items:
                    if self._inflight.get(self.key(item.envelope)) is item:
                        del self._inflight[self.key(item.envelope)]
                self._changed.notify_all()

    def _gather(self, batch: _Batch) -> None:
        """Wait for company until the batch is full or :func:`batch_due` says it goes."""
        with self._lock:
            while not batch.closed:
                due = batch_due(
                    opened=batch.opened,
                    last_join=batch.last_join,
                    size=len(batch.items),
                    in_flight=self._processing > 0,
                    answered_at=self._answered_at,
                    expected=self._expected,
                    wait=self.wait_seconds,
                    idle=self.idle_seconds,
                    hold=self.hold_seconds,
                )
                remaining = due - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def _wait(self, item: _Item) -> Outcome:
        if not item.done.wait(self.result_timeout):
            return Outcome(Kind.RETRY, "timed out waiting for the batch", item.envelope.event_id)
        assert item.outcome is not None
        return item.outcome

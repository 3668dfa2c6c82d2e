"""When a batch goes: the rule (:func:`shared.send.batching.batch_due`) and the dispatcher that follows it.

Under load every push holds one of the instance's threads until it is
answered, so the pushes that could join a batch are mostly those a batch in
flight still holds. These tests drive the :class:`Dispatcher` with a fake
batch processor and plain threads; gaps are generous (tens of milliseconds
against an idle gap of hundreds), and what they assert is batch sizes, never
speed (that is ``bench.sender_bench``'s job).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from shared.domain.models import Envelope
from shared.infra.metrics import Counters
from shared.outcome import Kind, Outcome
from shared.send.batching import Dispatcher, batch_due
from tests.unit.test_delivery import make_envelope

WAIT, IDLE, HOLD = 0.050, 0.015, 1.0


def due(**overrides: float) -> float:
    fields = {
        "opened": 10.0,
        "last_join": 10.0,
        "size": 1,
        "in_flight": False,
        "answered_at": float("-inf"),
        "expected": 0,
        "wait": WAIT,
        "idle": IDLE,
        "hold": HOLD,
    }
    return batch_due(**{**fields, **overrides})


# --- the rule ----------------------------------------------------------------------


def test_a_lone_event_goes_after_the_idle_gap() -> None:
    assert due() == pytest.approx(10.0 + IDLE)


def test_a_lone_event_right_after_its_own_answer_goes_after_the_idle_gap_too() -> None:
    # One invocation at a time (Pub/Sub pushing one message after another): the instance served
    # one event when it answered, and that one is back.
    assert due(answered_at=9.99, expected=1) == pytest.approx(10.0 + IDLE)


def test_a_batch_that_keeps_growing_goes_at_the_wait_when_nothing_was_answered() -> None:
    assert due(last_join=10.045, size=9) == pytest.approx(10.0 + WAIT)


def test_without_an_idle_gap_a_batch_always_waits_the_full_wait() -> None:
    assert due(idle=0) == pytest.approx(10.0 + WAIT)


def test_while_a_batch_is_in_flight_the_next_keeps_accepting_up_to_the_hold() -> None:
    assert due(in_flight=True) == pytest.approx(10.0 + HOLD)
    assert due(in_flight=True, last_join=10.9, size=40) == pytest.approx(10.0 + HOLD)
    assert due(in_flight=True, hold=0.01) == pytest.approx(10.0 + WAIT)  # never less than the wait
    assert due(in_flight=True, hold=0) == pytest.approx(10.0 + WAIT)  # hold 0: the plain wait


def test_after_an_answer_the_freed_invocations_are_awaited_past_the_wait() -> None:
    # Answered 40 ms after this batch opened, with 80 invocations in the instance: they come back
    # one by one, each within the idle gap of the last, well past the 50 ms wait.
    assert due(answered_at=10.04, expected=80, last_join=10.12, size=30) == pytest.approx(10.12 + IDLE)
    assert due(answered_at=10.04, expected=80, last_join=10.04, size=30) == pytest.approx(10.04 + IDLE)
    assert due(answered_at=10.04, expected=80, last_join=10.995, size=79) == pytest.approx(10.0 + HOLD)


def test_an_answer_just_before_the_batch_opened_counts_too() -> None:
    # The batch's first event is typically a freed invocation's next push.
    assert due(answered_at=9.97, expected=80, last_join=10.09, size=50) == pytest.approx(10.09 + IDLE)


def test_an_old_answer_does_not_stretch_a_batch() -> None:
    assert due(answered_at=9.0, expected=80, last_join=10.045, size=9) == pytest.approx(10.0 + WAIT)


def test_once_everyone_is_back_the_plain_rule_applies_from_the_answer() -> None:
    assert due(answered_at=10.03, expected=80, last_join=10.06, size=80) == pytest.approx(10.06 + IDLE)
    assert due(answered_at=10.03, expected=80, last_join=10.07, size=80) == pytest.approx(10.03 + WAIT)


def test_without_an_idle_gap_an_answer_restarts_the_wait_within_the_hold() -> None:
    assert due(idle=0, answered_at=10.04, expected=80) == pytest.approx(10.04 + WAIT)
    assert due(idle=0, answered_at=10.99, expected=80) == pytest.approx(10.0 + HOLD)


# --- the dispatcher ----------------------------------------------------------------


class GatedProcessor:
    """Records each batch; a batch whose events are all in ``gated`` waits for ``gate``."""

    def __init__(self, gated: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.started: dict[str, float] = {}
        self.gated = gated or set()
        self.gate = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, items: Sequence[tuple[Envelope, str | None]]) -> list[Outcome]:
        ids = [envelope.event_id for envelope, _ in items]
        with self._lock:
            self.batches.append(ids)
            now = time.monotonic()
            self.started.update(dict.fromkeys(ids, now))
        if set(ids) <= self.gated:
            assert self.gate.wait(30)
        return [Outcome(Kind.SENT, "done", envelope.event_id) for envelope, _ in items]

    def count(self) -> int:
        with self._lock:
            return len(self.batches)


def _eventually(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def _submit_in_threads(dispatcher: Dispatcher, envelopes: list[Envelope]) -> list[threading.Thread]:
    threads = [threading.Thread(target=dispatcher.submit, args=(e,), daemon=True) for e in envelopes]
    for thread in threads:
        thread.start()
    return threads


def test_a_lone_event_waits_the_idle_gap_not_the_wait_or_the_hold() -> None:
    processor = GatedProcessor()
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=60_000, result_timeout=60, counters=Counters(),
                            idle_ms=50, hold_ms=60_000)  # fmt: skip
    for event_id in ("lone-1", "lone-2"):  # the second comes right after the first's answer
        started = time.monotonic()
        (thread,) = _submit_in_threads(dispatcher, [make_envelope(event_id)])
        thread.join(10)
        assert not thread.is_alive(), "a lone event sat out the wait or the hold"
        assert processor.started[event_id] - started >= 0.05  # it did wait for company: one idle gap
    assert processor.batches == [["lone-1"], ["lone-2"]]


def test_a_batch_keeps_accepting_while_another_is_in_flight() -> None:
    processor = GatedProcessor(gated={"first"})
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=20, result_timeout=60, counters=Counters(),
                            idle_ms=10, hold_ms=60_000)  # fmt: skip
    first = _submit_in_threads(dispatcher, [make_envelope("first")])
    assert _eventually(lambda: processor.count() == 1)  # in flight, held at the gate
    later = [make_envelope(f"later{i}") for i in range(5)]
    threads = _submit_in_threads(dispatcher, later)
    time.sleep(0.3)  # fifteen times the wait: the old rule would have sent these already
    assert processor.count() == 1, "a batch went while another was in flight"
    processor.gate.set()
    for thread in first + threads:
        thread.join(10)
    assert processor.batches[0] == ["first"]
    assert sorted(processor.batches[1]) == sorted(e.event_id for e in later)
    assert len(processor.batches) == 2


def test_a_held_batch_goes_on_its_own_after_the_hold() -> None:
    processor = GatedProcessor(gated={"stuck"})
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=20, result_timeout=60, counters=Counters(),
                            idle_ms=10, hold_ms=200)  # fmt: skip
    stuck = _submit_in_threads(dispatcher, [make_envelope("stuck")])
    assert _eventually(lambda: processor.count() == 1)
    threads = _submit_in_threads(dispatcher, [make_envelope(f"next{i}") for i in range(3)])
    try:
        assert _eventually(lambda: processor.count() == 2), "a stuck batch held the next one forever"
        for thread in threads:
            thread.join(10)
        assert sorted(processor.batches[1]) == ["next0", "next1", "next2"]
    finally:
        processor.gate.set()
        for thread in stuck:
            thread.join(10)


def test_invocations_an_answer_frees_join_the_next_batch_past_the_wait() -> None:
    # Six invocations in a loop, as Pub/Sub pushes the next message once one is answered; after an
    # answer they come back 30 ms apart, so the last is back 150 ms later: three times the 20 ms
    # wait, well within the 200 ms idle gap of the one before.
    workers, rounds = 6, 4
    processor = GatedProcessor()
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=20, result_timeout=60, counters=Counters(),
                            idle_ms=200, hold_ms=60_000)  # fmt: skip
    outcomes: list[Outcome] = []
    start = threading.Barrier(workers)

    def loop(worker: int) -> None:
        start.wait()
        for round_ in range(rounds):
            if round_:
                time.sleep(0.03 * worker)
            outcomes.append(dispatcher.submit(make_envelope(f"w{worker}r{round_}")))

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(o.event_id for o in outcomes) == sorted(f"w{w}r{r}" for w in range(workers) for r in range(rounds))
    assert all(o.kind == Kind.SENT for o in outcomes)
    sizes = [len(batch) for batch in processor.batches]
    assert sum(sizes) == workers * rounds
    # However the first round split, every batch after it holds all six (the last may hold the rest).
    assert len(sizes) <= rounds + 1, sizes
    assert all(size == workers for size in sizes[1:-1]), sizes

"""The batching rule against an open stream: pushes that arrive whether or not a batch was answered.

Under a closed loop (a client that sends its next push once one is answered) the
pushes an answer frees come back, and :func:`shared.send.batching.batch_due`
waits for them. An open stream (Pub/Sub pushing a steady flow, faster than one
push per idle gap) does not come back: its pushes keep coming anyway. Waiting
for as many joins as the answered batch held made each batch wait for the
previous one's whole size, so batches grew by one flight each round until
every batch waited the full hold. Sizes are generous (a 60 ms idle gap against
pushes 20 ms apart, batches 100 ms in flight, a hold of 2 s); what is asserted
is how long batches gathered against the hold, not speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from shared.domain.models import Envelope
from shared.infra.metrics import Counters
from shared.outcome import Kind, Outcome
from shared.send.batching import Dispatcher
from tests.unit.test_delivery import make_envelope

GAP, FLIGHT = 0.020, 0.100  # one push every 20 ms; a batch takes 100 ms to process
WAIT_MS, IDLE_MS, HOLD_MS = 50, 60, 2000


class TimedProcessor:
    """Records when each batch started and its events; takes ``FLIGHT`` per batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[str]]] = []
        self._lock = threading.Lock()

    def __call__(self, items: Sequence[tuple[Envelope, str | None]]) -> list[Outcome]:
        with self._lock:
            self.batches.append((time.monotonic(), [envelope.event_id for envelope, _ in items]))
        time.sleep(FLIGHT)
        return [Outcome(Kind.SENT, "done", envelope.event_id) for envelope, _ in items]


def test_an_open_stream_faster_than_the_idle_gap_is_not_held_for_the_hold() -> None:
    processor = TimedProcessor()
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=WAIT_MS, result_timeout=60, counters=Counters(),
                            idle_ms=IDLE_MS, hold_ms=HOLD_MS)  # fmt: skip
    submitted: dict[str, float] = {}
    threads = []
    started = time.monotonic()
    for index in range(150):  # 3 s of pushes, each in its own invocation, never waiting for an answer
        event_id = f"open-{index}"
        submitted[event_id] = time.monotonic()
        thread = threading.Thread(target=dispatcher.submit, args=(make_envelope(event_id),), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(max(0.0, started + (index + 1) * GAP - time.monotonic()))
    for thread in threads:
        thread.join(30)
    assert sorted(e for _, ids in processor.batches for e in ids) == sorted(submitted)
    # How long each event waited for its batch to start: a flight and a wait, not the hold.
    waits = sorted(begun - submitted[e] for begun, ids in processor.batches for e in ids)
    longest = waits[-1]
    assert longest < 0.25 * HOLD_MS / 1000, (
        f"an event waited {longest * 1000:.0f} ms for its batch (hold {HOLD_MS} ms); batch sizes "
        f"{[len(ids) for _, ids in processor.batches]}"
    )

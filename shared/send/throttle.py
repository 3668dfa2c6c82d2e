"""The instance's throttle gate: once the destination says "too many requests", nobody here asks it again for a while.

Separate because it is pure timing (a clock, a random jitter, a condition)
with no Firestore or HTTP in it. Without it every redelivered push would send
its own request into a destination that is refusing them all: a retry storm
whose only effect is more refusals and used-up delivery attempts. With it:

- a throttled answer (:attr:`shared.destinations.Answer.throttled`: TikTok's
  40100 and 40132, HTTP 429) closes the gate for a backoff that doubles with
  each throttled answer in a row (``base`` to ``ceiling``, with jitter, so a
  fleet of instances does not come back in step);
- while it is closed, the sender asks the destination nothing: pushes wait at
  the gate (:meth:`ThrottleGate.wait_open`, bounded by the sender's hold) and
  batches already formed are answered "throttled" without a request;
- when it opens, the pushes that waited form one batch (the dispatcher
  coalesces them), whose one request is the probe: throttled again, the gate
  closes for twice as long; accepted, the backoff starts over.

So an instance sends at most one request per backoff while the destination
throttles, however many pushes it receives (``tests/unit/test_throttle_gate.py``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from shared import budgets


class ThrottleGate:
    """When this instance may next ask the destination; shared by every thread of the instance."""

    def __init__(
        self,
        base: float = budgets.SENDER_THROTTLE_BASE_SECONDS,
        ceiling: float = budgets.SENDER_THROTTLE_MAX_SECONDS,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or ceiling < base or not 0 <= jitter < 1:
            raise ValueError("the gate needs 0 < base <= ceiling and 0 <= jitter < 1")
        self.base, self.ceiling, self.jitter = base, ceiling, jitter
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._until = float("-inf")
        self.strikes = 0  # throttled answers in a row

    def backoff(self, strikes: int) -> float:
        """How long the gate stays closed after ``strikes`` throttled answers in a row, before jitter."""
        return min(self.ceiling, self.base * 2.0 ** max(0, strikes - 1))

    def throttled(self) -> float:
        """A throttled answer: close the gate (longer each time in a row); returns when it opens again."""
        with self._lock:
            now = self._clock()
            if now < self._until:
                # Another request of the same moment was throttled too: one strike for the moment, not one each.
                return self._until
            self.strikes += 1
            spread = 1 + self.jitter * (2 * self._rng.random() - 1)
            self._until = now + self.backoff(self.strikes) * spread
            self._changed.notify_all()
            return self._until

    def accepted(self) -> None:
        """An answer that was not throttling: the backoff starts over."""
        with self._lock:
            if self.strikes:
                self.strikes = 0
                self._changed.notify_all()

    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        with self._lock:
            return max(0.0, self._until - self._clock())

    @property
    def closed(self) -> bool:
        return self.remaining() > 0

    def wait_open(self, timeout: float) -> bool:
        """Wait until the gate is open, at most ``timeout`` seconds; whether it is open."""
        deadline = self._clock() + max(0.0, timeout)
        with self._lock:
            while True:
                now = self._clock()
                if now >= self._until:
                    return True
                if now >= deadline:
                    return False
                self._changed.wait(min(self._until, deadline) - now)

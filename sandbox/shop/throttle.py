"""Shopify's GraphQL cost bucket: a leaky bucket of query-cost points, refilled continuously.

A query may run only when its *requested* cost is available; it is charged that much up
front and refunded the difference once its *actual* cost is known. The clock is injected, so
tests step time instead of sleeping. Not thread-safe by itself: the app holds a lock around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A custom app on a Standard plan, as the throttleStatus Shopify answers shows it (README: sources).
DEFAULT_MAXIMUM = 2000.0
DEFAULT_RESTORE_RATE = 100.0
# Larger than this, a single query is refused whatever the bucket holds (MAX_COST_EXCEEDED).
DEFAULT_MAX_QUERY_COST = 1000


@dataclass
class CostBucket:
    maximum: float = DEFAULT_MAXIMUM
    restore_rate: float = DEFAULT_RESTORE_RATE
    clock: Callable[[], float] = time.monotonic
    available: float = field(default=-1.0)
    _updated: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.maximum <= 0 or self.restore_rate < 0:
            raise ValueError("a cost bucket needs maximum > 0 and restore_rate >= 0")
        if self.available < 0:
            self.available = self.maximum
        self._updated = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.available = min(self.maximum, self.available + (now - self._updated) * self.restore_rate)
        self._updated = now

    def try_charge(self, requested: float) -> bool:
        """Take ``requested`` points if the bucket holds them; False (nothing taken) when throttled."""
        self._refill()
        if requested > self.available:
            return False
        self.available -= requested
        return True

    def refund(self, points: float) -> None:
        """Give back what a query was charged but did not use."""
        self._refill()
        self.available = min(self.maximum, self.available + max(0.0, points))

    def seconds_until(self, requested: float) -> float:
        """How long until ``requested`` points are available (inf when they never will be)."""
        self._refill()
        missing = requested - self.available
        if missing <= 0:
            return 0.0
        if requested > self.maximum or self.restore_rate == 0:
            return float("inf")
        return missing / self.restore_rate

    def status(self) -> dict[str, Any]:
        """``throttleStatus`` as Shopify answers it."""
        self._refill()
        return {
            "maximumAvailable": float(self.maximum),
            "currentlyAvailable": float(int(self.available)),  # Shopify shows whole points
            "restoreRate": float(self.restore_rate),
        }

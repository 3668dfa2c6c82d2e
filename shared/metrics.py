"""Per-instance operation counters: what the benchmarks (and a curious operator) read on GET /metrics.

Counted where the operation happens (the Firestore and Pub/Sub adapters, the
sender), so the figures are what this instance actually did: Firestore RPCs and
documents read, written and deleted (what Firestore bills), Pub/Sub messages
and their bytes, TikTok requests. Counters live for the instance's lifetime;
readers take differences between two snapshots.

The receivers are public endpoints, so they serve the counters only when
``EXPOSE_METRICS`` is true (the local stack and the benchmarks set it); the
sender is private (only its push subscription may invoke it) and always does.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict


class Counters:
    """Thread-safe counters of one instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = defaultdict(int)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._values.items()))


COUNTERS = Counters()


def exposed(environ=os.environ) -> bool:
    """Whether a public receiver serves GET /metrics (``EXPOSE_METRICS``; off unless set)."""
    return environ.get("EXPOSE_METRICS", "").strip().lower() in ("1", "true", "yes")


def metrics_reply(path: str) -> tuple[dict, int] | None:
    """The GET /metrics answer of a public receiver, or None when the path is not /metrics."""
    if path.rstrip("/") != "/metrics":
        return None
    if not exposed():
        return {"error": "not found", "reason": "metrics are off (EXPOSE_METRICS)"}, 404
    return {"counters": COUNTERS.snapshot()}, 200

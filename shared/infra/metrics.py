"""Per-instance operation counters: what the benchmarks (and a curious operator) read on GET /metrics.

Counted where the operation happens (the Firestore and Pub/Sub adapters, the
sender), so the figures are what this instance actually did: Firestore RPCs and
documents read, written and deleted (what Firestore bills), Pub/Sub messages
and their bytes, TikTok requests. Counters live for the instance's lifetime;
readers take differences between two snapshots.

The sender also counts what it delivered, by pixel, source and event
(:func:`delivered_counts`): ``delivered.<pixel>.<source>.<event>``, one
``match_key.<key>.<pixel>.<source>.<event>`` per match key present
(:mod:`shared.domain.match_keys`) and ``match_score.<pixel>.<source>.<event>``, the
sum of the events' coverage scores (divide by ``delivered`` for the mean).
The receivers count ``identity.dropped.<field>``: a ttclid, ``_ttp``, locale,
city, state, zip or country dropped for not having its shape (:func:`count_dropped`).

The receivers are public endpoints, so they serve the counters only when
``EXPOSE_METRICS`` is true (the local stack and the benchmarks set it); the
sender is private (only its push subscription may invoke it) and always does.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any


class Counters:
    """Thread-safe counters of one instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = defaultdict(int)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def add_many(self, amounts: Mapping[str, int]) -> None:
        """Several counters under one lock (the sender counts a dozen per event delivered)."""
        with self._lock:
            for name, amount in amounts.items():
                self._values[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._values.items()))


COUNTERS = Counters()


def delivered_counts(pixel_code: str, source: str, event: str, keys: Iterable[str], score: int) -> dict[str, int]:
    """The counters one delivered event adds: its labels in the name, presence only."""
    labels = f"{pixel_code}.{source}.{event}"
    counts = {f"delivered.{labels}": 1, f"match_score.{labels}": score}
    counts.update((f"match_key.{key}.{labels}", 1) for key in keys)
    return counts


def count_dropped(field: str) -> None:
    """One identifier a receiver dropped for not having its field's shape (shared.domain.shapes)."""
    COUNTERS.add(f"identity.dropped.{field}")


def exposed(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a public receiver serves GET /metrics (``EXPOSE_METRICS``; off unless set)."""
    return environ.get("EXPOSE_METRICS", "").strip().lower() in ("1", "true", "yes")


def metrics_reply(path: str) -> tuple[dict[str, Any], int] | None:
    """The GET /metrics answer of a public receiver, or None when the path is not /metrics."""
    if path.rstrip("/") != "/metrics":
        return None
    if not exposed():
        return {"error": "not found", "reason": "metrics are off (EXPOSE_METRICS)"}, 404
    return {"counters": COUNTERS.snapshot()}, 200

"""What a benchmark reads from the processes it drives: CPU time from /proc and a function's GET /metrics."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of ``pid`` and its descendants (gunicorn's worker is a child), from /proc."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    except (OSError, ValueError):
        return None
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in stats.items() if ppid == parent and p not in tree]
        tree.update(children)
        frontier += children
    return sum(stats[p][1] for p in tree if p in stats) / tick


def counters(base_url: str) -> dict[str, int]:
    """A function's instance counters (GET /metrics; the receivers need EXPOSE_METRICS, see shared.infra.metrics)."""
    with urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=10) as response:  # noqa: S310 (loopback)
        return json.load(response)["counters"]


class Meter:
    """CPU time and counters of one function process around a phase of load."""

    def __init__(self, pid: int, base_url: str) -> None:
        self.pid, self.base_url = pid, base_url
        self._cpu: float | None = None
        self._counters: dict[str, int] = {}

    def __enter__(self) -> Meter:
        self._counters = counters(self.base_url)
        self._cpu = cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: Any) -> None:
        after_cpu = cpu_seconds(self.pid)
        after = counters(self.base_url)
        self.cpu = None if self._cpu is None or after_cpu is None else after_cpu - self._cpu
        self.delta = {key: value - self._counters.get(key, 0) for key, value in after.items()}

    def per(self, units: int) -> dict[str, float | None]:
        """CPU milliseconds and Firestore/Pub/Sub operations per unit (request or event)."""
        figures: dict[str, float | None] = {
            "cpu_ms": None if self.cpu is None else round(self.cpu / units * 1000, 3),
        }
        for key in ("firestore.rpcs", "firestore.reads", "firestore.writes", "firestore.deletes",
                    "pubsub.rpcs", "pubsub.messages", "pubsub.bytes"):  # fmt: skip
            figures[key] = round(self.delta.get(key, 0) / units, 3)
        return figures


def describe(figures: dict[str, float | None]) -> str:
    """One line for :meth:`Meter.per`'s figures."""
    return (f"CPU {figures['cpu_ms']} ms, Firestore {figures['firestore.rpcs']} RPCs "
            f"({figures['firestore.reads']} reads, {figures['firestore.writes']} writes, "
            f"{figures['firestore.deletes']} deletes), Pub/Sub {figures['pubsub.messages']} messages "
            f"of {figures['pubsub.bytes']} bytes")  # fmt: skip

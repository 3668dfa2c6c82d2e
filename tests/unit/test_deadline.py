"""One budget for a request's dependency calls."""

from __future__ import annotations

import threading
import time

import pytest

from shared.infra.deadline import BoundedProxy, Deadline, DependencyUnavailable


class Slow:
    prefix = "p_"

    def __init__(self) -> None:
        self.release = threading.Event()

    def quick(self, value):
        return value * 2

    def hang(self):
        self.release.wait(10)


def test_calls_share_one_budget_and_attributes_pass_through():
    target = Slow()
    proxy = BoundedProxy(target, "firestore", Deadline(0.3))
    assert proxy.prefix == "p_" and proxy.quick(21) == 42
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable, match="no answer within"):
        proxy.hang()
    with pytest.raises(DependencyUnavailable, match="0.3s are spent"):
        proxy.quick(1)  # nothing left for a second call
    assert time.monotonic() - started < 1.0
    target.release.set()

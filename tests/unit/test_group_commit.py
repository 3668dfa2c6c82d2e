"""Group commit: concurrent callers share flushes, each gets its own outcome, nobody is stranded."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.infra.group_commit import GroupCommit


class Flusher:
    """A flush that records its batches; the first one can be held open to let a queue build up."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        if not hold_first:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int | Exception]:
        self.entered.set()
        self.release.wait(10)
        with self._lock:
            self.batches.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


def test_a_lone_caller_is_flushed_at_once_in_a_batch_of_one():
    flusher = Flusher()
    commit = GroupCommit(flusher)
    started = time.perf_counter()
    assert commit.submit(4) == 40
    assert time.perf_counter() - started < 0.5  # no timer: nothing waits for company
    assert flusher.batches == [[4]]


def test_callers_arriving_during_a_flush_share_the_next_one_and_each_get_their_own_outcome():
    flusher = Flusher(hold_first=True)
    commit = GroupCommit(flusher)
    with ThreadPoolExecutor(max_workers=9) as pool:
        first = pool.submit(commit.submit, 0)
        assert flusher.entered.wait(5)
        queued = [pool.submit(commit.submit, i) for i in range(1, 9)]
        deadline = time.monotonic() + 5
        while len(commit._queue) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        flusher.release.set()
        assert first.result(5) == 0
        for i, future in enumerate(queued, start=1):
            if i % 2:
                with pytest.raises(ValueError, match=f"odd {i}"):
                    future.result(5)
            else:
                assert future.result(5) == i * 10
    assert flusher.batches[0] == [0]
    assert sorted(flusher.batches[1]) == list(range(1, 9))  # all eight in one flush
    assert (commit.flushes, commit.items_flushed) == (2, 9)


def test_batches_never_exceed_max_items():
    flusher = Flusher(hold_first=True)
    commit = GroupCommit(flusher, max_items=3)
    with ThreadPoolExecutor(max_workers=11) as pool:
        futures = [pool.submit(commit.submit, 0)]
        assert flusher.entered.wait(5)
        futures += [pool.submit(commit.submit, 2 * i) for i in range(1, 11)]
        while len(commit._queue) < 10:
            time.sleep(0.01)
        flusher.release.set()
        assert sorted(f.result(5) for f in futures) == [20 * i for i in range(11)]
    assert max(len(b) for b in flusher.batches) == 3
    assert sorted(i for b in flusher.batches for i in b) == [2 * i for i in range(11)]


def test_a_flush_that_raises_fails_its_own_batch_only():
    calls = []

    def flush(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("backend down")
        return [f"ok {i}" for i in items]

    commit = GroupCommit(flush)
    with pytest.raises(ConnectionError):
        commit.submit(1)
    assert commit.submit(2) == "ok 2"  # the next caller leads again: nothing stuck busy


def test_a_flush_returning_the_wrong_number_of_outcomes_fails_its_callers_instead_of_hanging():
    commit = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 outcomes for 1 items"):
        commit.submit(1)


def test_a_caller_not_flushed_in_time_leaves_the_queue_and_is_never_flushed():
    flusher = Flusher(hold_first=True)
    commit = GroupCommit(flusher, wait_timeout=0.2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(commit.submit, 0)
        assert flusher.entered.wait(5)
        with pytest.raises(TimeoutError, match="not flushed"):
            commit.submit(2)
        flusher.release.set()
        assert first.result(5) == 0
    assert flusher.batches == [[0]]  # 2 answered "timed out" and was not written behind the caller's back
    assert commit.submit(4) == 40


def test_many_callers_under_random_timing_each_get_exactly_their_own_result():
    lock = threading.Lock()
    seen: list[int] = []

    def flush(items):
        time.sleep(random.random() / 500)
        with lock:
            seen.extend(items)
        return [i * 3 for i in items]

    commit = GroupCommit(flush, max_items=7)

    def call(i):
        time.sleep(random.random() / 1000)
        return commit.submit(i)

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(call, range(2000)))
    assert results == [i * 3 for i in range(2000)]
    assert sorted(seen) == list(range(2000))  # every item flushed exactly once
    assert commit.flushes < 2000  # and they did share flushes

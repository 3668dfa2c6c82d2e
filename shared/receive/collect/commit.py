"""Accepted plans of concurrent requests, committed together; and the contexts this instance already wrote.

One publish and as few Firestore batches as possible serve a group of requests,
yet each request gets its own answer: one request's bad data fails that request
alone (see :func:`commit_plans`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from shared import budgets
from shared.infra.deadline import DependencyUnavailable
from shared.infra.pubsub import AsyncPublisher
from shared.infra.store import MAX_BATCH_WRITES, ContextWrite
from shared.receive.collect.plan import Plan

# What an instance remembers of the contexts it wrote (see KnownContexts): shorter than any CLICK_TTL_DAYS,
# long enough for a browsing session; about 200 bytes an entry.
KNOWN_CONTEXTS_MAX = 20_000
KNOWN_CONTEXTS_SECONDS = budgets.KNOWN_CONTEXTS_SECONDS
PUBLISH_WAIT_SECONDS = budgets.COLLECT_PUBLISH_SECONDS


class Unavailable(Exception):
    """Firestore or Pub/Sub failed for one request: it answers 503 and the page may retry."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what} unavailable ({type(cause).__name__})")
        self.what = what
        self.cause = cause


class ContextStore(Protocol):
    """The store as collect uses it: contexts written in batches, a denial alone (:class:`shared.infra.store.Store`)."""

    def put_click_contexts(self, writes: Sequence[ContextWrite]) -> int: ...

    def replace_click_contexts(
        self, pixel_code: str, join_keys: Sequence[tuple[str, str]], context: dict[str, Any], ttl: dt.timedelta
    ) -> int:
        """A denial: ``context`` as the whole document under every join key (see the handler's ``_withhold``)."""
        ...


def _is_request_error(exc: BaseException) -> bool:
    """A 4xx from the API (one bad document spoils a whole batch); not an outage."""
    try:
        from google.api_core import exceptions as gexc
    except ImportError:  # pragma: no cover - the client libraries are installed wherever a store is
        return False
    if isinstance(exc, DependencyUnavailable):  # the bounded call's own failure, wrapped
        exc = exc.__cause__ or exc
    # A message that does not serialise (ValueError, TypeError) is this data's fault too.
    return isinstance(exc, (gexc.ClientError, ValueError, TypeError))


def commit_plans(plans: Sequence[Plan], store: ContextStore | None, publisher: AsyncPublisher) -> list[int | Exception]:
    """One round trip each to Pub/Sub and Firestore for several requests' plans, overlapped.

    Every plan's envelopes leave in one publish, on the publisher's helper thread,
    while the contexts are written in as few batches as Firestore allows; then
    the publish is waited for (a failed publish fails every plan with events:
    Pub/Sub stores a request's messages all or none). Returns, per
    plan, the number of context documents written or the :class:`Unavailable`
    that plan's request answers with. A batch or a publish refused as a bad
    request (or one that would not serialise) is retried plan by plan, so one
    request's bad data does not fail the others. ``store`` may be None only when no plan has join keys.
    """
    outcomes: list[int | Exception] = [0] * len(plans)
    envelopes = [envelope for plan in plans for envelope in plan.envelopes]
    publishing: Future[list[str]] | None = None
    if envelopes:
        try:
            traces = [plan.traceparent for plan in plans for _ in plan.envelopes]
            publishing = publisher.publish_async(envelopes, traces)
        except Exception as exc:  # any client failure
            publishing = _failed(exc)
    for group in _store_groups(plans):
        writes = [_context_write(plans[i]) for i in group]
        assert store is not None  # there are groups only when plans have join keys
        try:
            store.put_click_contexts(writes)
        except Exception as exc:  # any client failure: the requests of this batch answer 503
            if len(group) > 1 and _is_request_error(exc):
                for index, write in zip(group, writes, strict=True):
                    try:
                        store.put_click_contexts([write])
                    except Exception as alone:  # this plan's own failure
                        outcomes[index] = Unavailable("firestore", alone)
            else:
                for index in group:
                    outcomes[index] = Unavailable("firestore", exc)
    if publishing is not None:
        try:
            # The publish has its own deadline; this bounds the wait even if its retries outlast it.
            publishing.result(timeout=PUBLISH_WAIT_SECONDS)
        except Exception as exc:  # any client failure or the deadline: every plan with events answers 503
            one_by_one = sum(1 for plan in plans if plan.envelopes) > 1 and _is_request_error(exc)
            failures = _publish_alone(plans, publisher) if one_by_one else {}
            for index, plan in enumerate(plans):
                if plan.envelopes and not isinstance(outcomes[index], Exception):
                    if not one_by_one:
                        outcomes[index] = Unavailable("pubsub", exc)
                    elif index in failures:
                        outcomes[index] = Unavailable("pubsub", failures[index])
    for index, plan in enumerate(plans):
        if not isinstance(outcomes[index], Exception):
            outcomes[index] = len(plan.join_keys)
    return outcomes


def _publish_alone(plans: Sequence[Plan], publisher: AsyncPublisher) -> dict[int, Exception]:
    """Each plan's events in a publish of their own (overlapped); the failures by plan index."""
    pending: dict[int, Future[list[str]]] = {}
    for index, plan in enumerate(plans):
        if plan.envelopes:
            try:
                pending[index] = publisher.publish_async(plan.envelopes, [plan.traceparent] * len(plan.envelopes))
            except Exception as exc:  # this plan's own failure
                pending[index] = _failed(exc)
    failures: dict[int, Exception] = {}
    deadline = time.monotonic() + PUBLISH_WAIT_SECONDS
    for index, future in pending.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # this plan's own failure, or the shared deadline
            failures[index] = exc
    return failures


def _failed(exc: Exception) -> Future[list[str]]:
    future: Future[list[str]] = Future()
    future.set_exception(exc)
    return future


def _context_write(plan: Plan) -> ContextWrite:
    return (plan.pixel.pixel_code, plan.join_keys, plan.context, dt.timedelta(days=plan.pixel.click_ttl_days))


def _store_groups(plans: Sequence[Plan], limit: int = MAX_BATCH_WRITES) -> list[list[int]]:
    """Indexes of the plans with join keys, in consecutive groups of at most ``limit`` documents each."""
    groups: list[list[int]] = []
    size = limit
    for index, plan in enumerate(plans):
        count = len(plan.join_keys)
        if not count:
            continue
        if size + count > limit:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += count
    return groups


# --- contexts already written ---------------------------------------------------------------------


def context_digest(context: Mapping[str, Any]) -> str:
    """Pure: what a context would change when merged, as a digest; its page and Nones (merges keep those) aside."""
    kept = {k: v for k, v in context.items() if v is not None and k != "page_url"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


class KnownContexts:
    """The click contexts this instance wrote lately: (pixel, join key) -> digest of what it wrote.

    A request that says its context is ``unchanged`` skips the write only when
    every one of its join keys was written here, with this very digest (consent
    included), within ``seconds``. So the flag can never keep a new consent, a
    new click or a new key from being stored, nor leave a deleted context
    deleted for a grant this instance has not itself written: at worst it saves
    a write that would have changed nothing but the page and the time to live.
    """

    def __init__(self, max_entries: int = KNOWN_CONTEXTS_MAX, seconds: float = KNOWN_CONTEXTS_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_entries, self.seconds, self.clock = max_entries, seconds, clock
        self._entries: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, pixel_code: str, join_keys: Sequence[tuple[str, str]], digest: str) -> bool:
        if not join_keys:
            return False
        oldest = self.clock() - self.seconds
        with self._lock:
            for kind, value in join_keys:
                entry = self._entries.get((pixel_code, kind, value))
                if entry is None or entry[0] != digest or entry[1] < oldest:
                    return False
        return True

    def remember(self, pixel_code: str, join_keys: Sequence[tuple[str, str]], digest: str) -> None:
        now = self.clock()
        with self._lock:
            for kind, value in join_keys:
                key = (pixel_code, kind, value)
                self._entries[key] = (digest, now)
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, pixel_code: str, join_keys: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            for kind, value in join_keys:
                self._entries.pop((pixel_code, kind, value), None)

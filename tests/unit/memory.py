"""In-memory stand-ins for the store and publisher protocols (shared.receive.orders.OrderStore and Publisher,
shared.send.claims.ClaimDocuments).

For unit tests only, which need no emulator and run in milliseconds. The
emulator tests stay the real part: ``tests/emulator/test_memory_store_contract.py`` runs
one set of checks against this and :class:`shared.infra.store.Store`, so the
two cannot drift apart.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.models import Envelope
from shared.infra.metrics import COUNTERS, Counters
from shared.infra.store import (
    ALREADY_EXISTS,
    CLICK_CONTEXTS,
    DAY_FIELD,
    MAX_BATCH_WRITES,
    OK,
    TTL_FIELD,
    BulkOp,
    Create,
    Delete,
    Found,
    Merge,
    Update,
    day_of,
    doc_id,
    is_expired,
    utcnow,
)

# google.rpc.Code of one write in a bulk write, as Firestore answers (besides OK and ALREADY_EXISTS).
NOT_FOUND, FAILED_PRECONDITION = 5, 9


@dataclass(frozen=True)
class Increment:
    """What :meth:`MemoryStore.increment` returns: adds ``amount`` to the stored number (``amount`` if none)."""

    amount: int


class MemoryStore:
    """Documents by (collection, document id) with ``created_at``/``expire_at``, under Store's expiry rule.

    An expired document is absent for reads and taken over by ``claim_once``
    (Firestore's TTL deletes it late; :class:`~shared.infra.store.Store` checks
    ``expire_at`` itself). Document ids are :func:`shared.infra.store.doc_id`'s,
    so keys collide exactly as they do in Firestore. ``fail`` makes every
    call raise it (a store that is down); ``calls`` lists the methods called.

    As :class:`~shared.send.claims.ClaimDocuments` it answers bulk writes as
    Firestore's BatchWrite does: each write alone, with its google.rpc.Code,
    an update time that changes on every write, preconditions on it, and
    ``increment`` transforms; an expired document still exists for them and
    for ``get_many`` (the claims decide), as in Firestore until TTL deletes it.
    """

    def __init__(self, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.clock = clock
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.times: dict[tuple[str, str], dt.datetime] = {}  # each document's update time
        self.calls: list[str] = []
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.fail is not None:
            raise self.fail

    def claim_once(self, collection: str, key: Sequence[object], ttl: dt.timedelta, **fields: Any) -> bool:
        with self._lock:
            self._enter("claim_once")
            now = self.clock()
            slot = (collection, doc_id(*key))
            if not is_expired(self.docs.get(slot), now):
                return False
            self._write(slot, {**fields, "created_at": now, DAY_FIELD: day_of(now), TTL_FIELD: now + ttl})
            return True

    def get(self, collection: str, key: Sequence[object]) -> dict[str, Any] | None:
        with self._lock:
            self._enter("get")
            data = self.docs.get((collection, doc_id(*key)))
            return None if is_expired(data, self.clock()) else dict(data)  # type: ignore[arg-type]

    def find_click_context(self, pixel_code: str, join_keys: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
        with self._lock:
            self._enter("find_click_context")
            now = self.clock()
            for kind, value in join_keys:
                data = self.docs.get((CLICK_CONTEXTS, doc_id(pixel_code, kind, value))) if value else None
                if data and not is_expired(data, now):
                    return dict(data)
            return None

    def put_click_context(
        self, pixel_code: str, join_keys: Iterable[tuple[str, str]], context: dict[str, Any], ttl: dt.timedelta
    ) -> int:
        """Seeds a context as ``Store.put_click_context`` does (not part of OrderStore: collect writes them)."""
        with self._lock:
            self._enter("put_click_context")
            now = self.clock()
            written = 0
            for kind, value in join_keys:
                slot = (CLICK_CONTEXTS, doc_id(pixel_code, kind, value))
                data = {k: v for k, v in context.items() if v is not None}
                extra = {"pixel_code": pixel_code, "join_kind": kind, "updated_at": now, TTL_FIELD: now + ttl}
                self._write(slot, {**self.docs.get(slot, {}), **data, **extra})
                written += 1
            return written

    def live(self, collection: str) -> list[dict[str, Any]]:
        """Every live document of ``collection`` (what the tests assert on)."""
        with self._lock:
            now = self.clock()
            return [dict(d) for (c, _), d in self.docs.items() if c == collection and not is_expired(d, now)]

    # --- shared.send.claims.ClaimDocuments ---------------------------------------------

    def bulk(
        self, ops: Sequence[BulkOp], *, counters: Counters = COUNTERS, timeout: float | None = None
    ) -> list[tuple[int, Any]]:
        with self._lock:
            self._enter("bulk")
            results = []
            for start in range(0, len(ops), MAX_BATCH_WRITES):
                chunk = ops[start : start + MAX_BATCH_WRITES]
                slots = [(op.collection, doc_id(*op.key)) for op in chunk]
                for op in chunk:
                    counters.add("firestore.deletes" if isinstance(op, Delete) else "firestore.writes")
                counters.add("firestore.rpcs")
                if len(set(slots)) < len(slots):  # Firestore refuses the whole request (InvalidArgument)
                    raise ValueError("the same document cannot be written more than once in a single request")
                results += [self._apply(op, slot) for op, slot in zip(chunk, slots, strict=True)]
            return results

    def _apply(self, op: BulkOp, slot: tuple[str, str]) -> tuple[int, Any]:
        old = self.docs.get(slot)
        if isinstance(op, Create):
            return (ALREADY_EXISTS, None) if old is not None else (OK, self._write(slot, _merged({}, op.data)))
        if isinstance(op, Merge):
            return OK, self._write(slot, _merged(old or {}, op.data, deep=True))
        if op.if_update_time is not None and (old is None or self.times[slot] != op.if_update_time):
            return FAILED_PRECONDITION, None
        if isinstance(op, Update):
            return (NOT_FOUND, None) if old is None else (OK, self._write(slot, _merged(old, op.data)))
        self.docs.pop(slot, None)
        self.times.pop(slot, None)
        return OK, None

    def _write(self, slot: tuple[str, str], data: dict[str, Any]) -> dt.datetime:
        """Store ``data``; its new update time, later than any before (Firestore's are per write)."""
        latest = max(self.times.values(), default=None)
        now = self.clock()
        self.times[slot] = now if latest is None or now > latest else latest + dt.timedelta(microseconds=1)
        self.docs[slot] = data
        return self.times[slot]

    def get_many(
        self,
        collection: str,
        keys: Sequence[Sequence[object]],
        *,
        counters: Counters = COUNTERS,
        timeout: float | None = None,
    ) -> list[Found]:
        with self._lock:
            self._enter("get_many")
            counters.add("firestore.rpcs")
            counters.add("firestore.reads", len(keys))
            slots = [(collection, doc_id(*key)) for key in keys]
            return [Found(copy.deepcopy(self.docs.get(s)), self.times.get(s)) for s in slots]

    def put(
        self,
        collection: str,
        key: Sequence[object],
        data: dict[str, Any],
        *,
        counters: Counters = COUNTERS,
        timeout: float | None = None,
    ) -> str:
        with self._lock:
            self._enter("put")
            counters.add("firestore.rpcs")
            counters.add("firestore.writes")
            self._write((collection, doc_id(*key)), _merged({}, data))
            return doc_id(*key)

    def live_documents(self, collection: str, where: tuple[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            self._enter("live_documents")
            now = self.clock()
            found = [(i, d) for (c, i), d in sorted(self.docs.items()) if c == collection and not is_expired(d, now)]
            return [(i, copy.deepcopy(d)) for i, d in found if where is None or d.get(where[0], ...) == where[1]]

    def update_by_id(self, collection: str, document: str, fields: dict[str, Any]) -> None:
        from google.api_core.exceptions import NotFound  # what Firestore raises: callers catch the same

        with self._lock:
            self._enter("update_by_id")
            if (collection, document) not in self.docs:
                raise NotFound(f"no document {document}")
            self._write((collection, document), _merged(self.docs[(collection, document)], fields))

    @staticmethod
    def increment(amount: int = 1) -> Any:
        return Increment(amount)


def _merged(old: dict[str, Any], new: dict[str, Any], deep: bool = False) -> dict[str, Any]:
    """``new``'s fields over ``old``'s (maps merged too when ``deep``: ``set(merge=True)``), increments applied."""
    merged = copy.deepcopy(old)
    for name, value in new.items():
        if isinstance(value, Increment):
            was = merged.get(name)
            number = isinstance(was, int | float) and not isinstance(was, bool)
            merged[name] = was + value.amount if number else value.amount
        elif deep and isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = _merged(merged[name], value, deep=True)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


class MemoryPublisher:
    """Records what is published; ``fail`` makes :meth:`publish` raise it and record nothing."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def publish(self, envelopes: list[Envelope]) -> list[str]:
        with self._lock:
            if self.fail is not None:
                raise self.fail
            start = len(self.envelopes)
            self.envelopes.extend(envelopes)
            return [str(start + i + 1) for i in range(len(envelopes))]

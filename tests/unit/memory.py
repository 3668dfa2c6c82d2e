"""In-memory stand-ins for the order flow's boundaries (shared.receive.orders.OrderStore, Publisher).

For unit tests only, which need no emulator and run in milliseconds. The
emulator tests stay the real part: ``tests/emulator/test_memory_store_contract.py`` runs
one set of checks against this and :class:`shared.infra.store.Store`, so the
two cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shared.domain.models import Envelope
from shared.infra.store import CLICK_CONTEXTS, TTL_FIELD, doc_id, is_expired, utcnow


class MemoryStore:
    """Documents by (collection, document id) with ``created_at``/``expire_at``, under Store's expiry rule.

    An expired document is absent for reads and taken over by ``claim_once``
    (Firestore's TTL deletes it late; :class:`~shared.infra.store.Store` checks
    ``expire_at`` itself). Document ids are :func:`shared.infra.store.doc_id`'s,
    so keys collide exactly as they do in Firestore. ``fail`` makes every
    call raise it (a store that is down); ``calls`` lists the methods called.
    """

    def __init__(self, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.clock = clock
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
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
            self.docs[slot] = {**fields, "created_at": now, TTL_FIELD: now + ttl}
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
                self.docs[slot] = {**self.docs.get(slot, {}), **data, **extra}
                written += 1
            return written

    def live(self, collection: str) -> list[dict[str, Any]]:
        """Every live document of ``collection`` (what the tests assert on)."""
        with self._lock:
            now = self.clock()
            return [dict(d) for (c, _), d in self.docs.items() if c == collection and not is_expired(d, now)]


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

"""Firestore adapter: click contexts, one-time claims and records, all with TTLs.

Every document carries ``expire_at`` (a timestamp) so a Firestore TTL policy
on that field deletes it; reads also check it, because TTL deletion can lag
by a day. Collections (each prefixed by ``FIRESTORE_COLLECTION_PREFIX``):

- ``click_contexts``: ttclid/_ttp, consent snapshot, page, ip, user agent and
  hashed identifiers, one document per (pixel, join key).
- ``webhook_deliveries``: no longer written (Shopify delivery ids were
  claimed there); databases deployed before hold such records until their TTL.
- ``order_events``: outcome records of order events not published (withheld,
  skipped) and the records of cancellations and refunds.
- ``event_claims``: the sender's per-event claims (for an order event, the
  order's only claim, and a cancellation's tombstone on its Purchase), and
  the records of browser events sent without one (see shared.send.claims).
- ``dead_events``: events TikTok refused for good, kept for re-driving.

Document ids are readable keys (``|``-joined); a key that would be too long or
contains ``/`` is replaced by its SHA-256 so any input is a valid id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.infra.metrics import COUNTERS, Counters

if TYPE_CHECKING:
    from google.cloud import firestore
    from google.cloud.firestore_v1.collection import CollectionReference
    from google.cloud.firestore_v1.query import Query

    from shared.config import ReceiverSettings

CLICK_CONTEXTS = "click_contexts"
WEBHOOK_DELIVERIES = "webhook_deliveries"
ORDER_EVENTS = "order_events"
# First part of the key of an order event's outcome record in ORDER_EVENTS: ("outcome", event_id), written by the
# webhooks (withheld, skipped) and by the sender (an order event outside its window), first answer wins.
OUTCOME_RECORD = "outcome"
EVENT_CLAIMS = "event_claims"
DEAD_EVENTS = "dead_events"
COLLECTIONS = (CLICK_CONTEXTS, WEBHOOK_DELIVERIES, ORDER_EVENTS, EVENT_CLAIMS, DEAD_EVENTS)
TTL_FIELD = "expire_at"
# The UTC day a claim or record was written ("2026-12-07"): what the report selects a window's documents by.
# Its timestamps (created_at, sent_at, updated_at) are exempt from indexing (shared/data/firestore_collections.json,
# terraform/firestore.tf): an indexed, ever-increasing field caps a collection at 500 writes a second, while
# one day's documents share this value and so spread over their (hashed or random) document ids.
DAY_FIELD = "day"
MAX_BATCH_WRITES = 500  # Firestore's limit on writes in one commit

# (pixel code, join keys, context, time to live): one request's click context.
ContextWrite = tuple[str, Sequence[tuple[str, str]], dict[str, Any], dt.timedelta]

OK, ALREADY_EXISTS = 0, 6  # google.rpc.Code of one write in a bulk write (Store.bulk); -1: the RPC itself failed


# --- independent writes for Store.bulk: each succeeds or fails alone -------------


@dataclass(frozen=True)
class Create:
    """Create the document; ALREADY_EXISTS if it is there."""

    collection: str
    key: Sequence[object]
    data: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """Replace the fields of an existing document, only if nobody wrote it since ``if_update_time``."""

    collection: str
    key: Sequence[object]
    data: dict[str, Any]
    if_update_time: Any = None


@dataclass(frozen=True)
class Merge:
    """Set the fields, creating the document if needed (``set(merge=True)``)."""

    collection: str
    key: Sequence[object]
    data: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    """Delete the document; with ``if_update_time``, only if nobody wrote it since (else no-op: not ours)."""

    collection: str
    key: Sequence[object]
    if_update_time: Any = None


BulkOp = Create | Update | Merge | Delete


@dataclass(frozen=True)
class Found:
    """One document read by :meth:`Store.get_many`: its fields (None: no such document) and when it was written."""

    data: dict[str, Any] | None
    update_time: Any = None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def day_of(moment: dt.datetime) -> str:
    """:data:`DAY_FIELD`'s value for a document written at ``moment``."""
    return moment.astimezone(dt.timezone.utc).date().isoformat()


def doc_id(*parts: object) -> str:
    key = "|".join(str(p) for p in parts)
    if "/" in key or len(key.encode()) > 500 or key.startswith("__") or key in (".", ".."):
        return "h_" + hashlib.sha256(key.encode()).hexdigest()
    return key


def is_expired(document: dict[str, Any] | None, now: dt.datetime | None = None) -> bool:
    if not document:
        return True
    expire_at = document.get(TTL_FIELD)
    return expire_at is not None and expire_at <= (now or utcnow())


def make_client(project: str, database: str = "(default)") -> firestore.Client:
    """A Firestore client (honours FIRESTORE_EMULATOR_HOST). Import kept local: it is slow."""
    from google.cloud import firestore

    return firestore.Client(project=project, database=database)


def store_from_settings(settings: ReceiverSettings, timeout: float | None = None) -> Store:
    """The Store a function's settings describe (project, database, collection prefix)."""
    return Store(make_client(settings.project, settings.firestore_database), settings.collection_prefix, timeout)


class Store:
    """Thin, synchronous wrapper over one Firestore client."""

    def __init__(self, client: firestore.Client, prefix: str = "", timeout: float | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.timeout = timeout  # seconds per batched write; None: the client library's default

    def collection(self, name: str) -> CollectionReference:
        return self.client.collection(self.prefix + name)

    # --- one-time claims -------------------------------------------------

    def claim_once(self, collection: str, key: Sequence[object], ttl: dt.timedelta, **fields: Any) -> bool:
        """Atomically create the document for ``key``; False if it already exists (and is live).

        An expired document that TTL has not removed yet is taken over.
        """
        # Imported here, not at module level: google.api_core costs ~55 ms of cold start.
        from google.api_core import exceptions as gexc

        ref = self.collection(collection).document(doc_id(*key))
        now = utcnow()
        data = {**fields, "created_at": now, DAY_FIELD: day_of(now), TTL_FIELD: now + ttl}
        try:
            _count(writes=1)
            ref.create(data)
            return True
        except gexc.AlreadyExists:
            pass
        _count(reads=1)
        existing = ref.get()
        if existing.exists and not is_expired(existing.to_dict(), now):
            return False
        try:
            # Take over only if nobody else did in between (precondition on update_time).
            _count(writes=1)
            if existing.exists:
                option = self.client.write_option(last_update_time=existing.update_time)
                ref.update(data, option=option)
            else:
                ref.create(data)
            return True
        except (gexc.AlreadyExists, gexc.FailedPrecondition):
            return False

    def mark(self, collection: str, key: Sequence[object], **fields: Any) -> None:
        """Update fields of an existing document (raises NotFound if it is gone)."""
        _count(writes=1)
        self.collection(collection).document(doc_id(*key)).update(fields)

    def release(self, collection: str, key: Sequence[object]) -> None:
        """Undo a claim whose effect did not happen (so a retry can claim again)."""
        _count(deletes=1)
        self.collection(collection).document(doc_id(*key)).delete()

    def get(self, collection: str, key: Sequence[object]) -> dict[str, Any] | None:
        _count(reads=1)
        snapshot = self.collection(collection).document(doc_id(*key)).get()
        data = snapshot.to_dict() if snapshot.exists else None
        return None if is_expired(data) else data

    # --- bulk writes and reads (the sender's claims and dead records) ------
    # Counted into the caller's ``counters`` (the sender counts per instance, tests per case).

    def bulk(
        self, ops: Sequence[BulkOp], *, counters: Counters = COUNTERS, timeout: float | None = None
    ) -> list[tuple[int, Any]]:
        """Apply independent writes (BatchWrite: each succeeds or fails alone); (code, update_time) each.

        ``code`` is a google.rpc.Code (:data:`OK`, :data:`ALREADY_EXISTS`, ...);
        ``update_time`` is the write's, when it succeeded. A failed RPC raises.
        """
        from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

        results: list[tuple[int, Any]] = []
        for start in range(0, len(ops), MAX_BATCH_WRITES):
            batch = BulkWriteBatch(self.client)
            for op in ops[start : start + MAX_BATCH_WRITES]:
                ref = self.collection(op.collection).document(doc_id(*op.key))
                if isinstance(op, Create):
                    batch.create(ref, op.data)
                elif isinstance(op, Update):
                    batch.update(ref, op.data, option=self.write_option_for(op.if_update_time))
                elif isinstance(op, Merge):
                    batch.set(ref, op.data, merge=True)
                else:
                    batch.delete(ref, option=self.write_option_for(op.if_update_time))
                counters.add("firestore.deletes" if isinstance(op, Delete) else "firestore.writes")
            counters.add("firestore.rpcs")
            response = batch.commit(timeout=self._timeout(timeout))
            for status, result in zip(response.status, response.write_results, strict=True):
                results.append((status.code, result.update_time if status.code == OK else None))
        return results

    def get_many(
        self,
        collection: str,
        keys: Sequence[Sequence[object]],
        *,
        counters: Counters = COUNTERS,
        timeout: float | None = None,
    ) -> list[Found]:
        """The documents of ``keys`` in one RPC, in order (expired ones too: the caller may take them over)."""
        refs = [self.collection(collection).document(doc_id(*key)) for key in keys]
        counters.add("firestore.rpcs")
        counters.add("firestore.reads", len(refs))
        snaps = {snap.reference.path: snap for snap in self.client.get_all(refs, timeout=self._timeout(timeout))}
        found = []
        for ref in refs:
            snap = snaps.get(ref.path)
            found.append(Found(snap.to_dict(), snap.update_time) if snap is not None and snap.exists else Found(None))
        return found

    def put(
        self,
        collection: str,
        key: Sequence[object],
        data: dict[str, Any],
        *,
        counters: Counters = COUNTERS,
        timeout: float | None = None,
    ) -> str:
        """Write the whole document (replacing any); its id."""
        document = doc_id(*key)
        counters.add("firestore.rpcs")
        counters.add("firestore.writes")
        self.collection(collection).document(document).set(data, timeout=self._timeout(timeout))
        return document

    def live_documents(self, collection: str, where: tuple[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(id, fields) of every live document of ``collection``, or of those whose field equals a value.

        Not counted: an operator's listing (re-drive), not a function's work.
        """
        from google.cloud.firestore_v1.base_query import FieldFilter

        query: CollectionReference | Query = self.collection(collection)
        if where is not None:
            query = query.where(filter=FieldFilter(where[0], "==", where[1]))
        now = utcnow()
        documents = ((snap.id, snap.to_dict()) for snap in query.stream())
        return [(id_, data) for id_, data in documents if data is not None and not is_expired(data, now)]

    def update_by_id(self, collection: str, document: str, fields: dict[str, Any]) -> None:
        """Update fields of the document with this id (one listed by :meth:`live_documents`). Not counted."""
        self.collection(collection).document(document).update(fields)

    def write_option_for(self, update_time: Any) -> Any:
        """The precondition "nobody wrote it since ``update_time``" (None: no precondition)."""
        return None if update_time is None else self.client.write_option(last_update_time=update_time)

    @staticmethod
    def increment(amount: int = 1) -> Any:
        """A field value that adds ``amount`` to the stored number (0 when missing) as it is written."""
        from google.cloud.firestore_v1.transforms import Increment

        return Increment(amount)

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    # --- click contexts --------------------------------------------------

    def put_click_context(
        self,
        pixel_code: str,
        join_keys: Iterable[tuple[str, str]],
        context: dict[str, Any],
        ttl: dt.timedelta,
    ) -> int:
        """Store ``context`` under every (kind, value) join key in one batched write."""
        return self.put_click_contexts([(pixel_code, list(join_keys), context, ttl)])

    def put_click_contexts(self, writes: Sequence[ContextWrite]) -> int:
        """Several contexts (a group commit's requests) in one batched write; returns the documents written.

        At most :data:`MAX_BATCH_WRITES` documents: the caller splits bigger groups.
        Two writes to the same document are merged here, in order, as two
        consecutive merges would have left it.
        """
        now = utcnow()
        documents: dict[str, dict[str, Any]] = {}
        for pixel_code, join_keys, context, ttl in writes:
            for kind, value in join_keys:
                key = doc_id(pixel_code, kind, value)
                data = {**context, "pixel_code": pixel_code, "join_kind": kind, "updated_at": now, TTL_FIELD: now + ttl}
                documents[key] = _merged(documents.get(key, {}), _without_nones(data))
        if len(documents) > MAX_BATCH_WRITES:
            raise ValueError(f"{len(documents)} documents in one batch; Firestore takes {MAX_BATCH_WRITES}")
        if documents:
            batch = self.client.batch()
            collection = self.collection(CLICK_CONTEXTS)
            for key, data in documents.items():
                # merge: a later page view without a ttclid must not erase an earlier one.
                batch.set(collection.document(key), data, merge=True)
            _count(writes=len(documents))
            batch.commit(timeout=self.timeout)
        return len(documents)

    def replace_click_contexts(
        self, pixel_code: str, join_keys: Sequence[tuple[str, str]], context: dict[str, Any], ttl: dt.timedelta
    ) -> int:
        """Write ``context`` as the whole document under every join key, replacing what was there (one batch).

        A denial is stored so: nothing of an earlier context (its click ids, identifiers) survives it.
        """
        now = utcnow()
        if len(join_keys) > MAX_BATCH_WRITES:
            raise ValueError(f"{len(join_keys)} documents in one batch; Firestore takes {MAX_BATCH_WRITES}")
        if not join_keys:
            return 0
        batch = self.client.batch()
        collection = self.collection(CLICK_CONTEXTS)
        for kind, value in join_keys:
            data = {**context, "pixel_code": pixel_code, "join_kind": kind, "updated_at": now, TTL_FIELD: now + ttl}
            batch.set(collection.document(doc_id(pixel_code, kind, value)), data)  # no merge: replaces
        _count(writes=len(join_keys))
        batch.commit(timeout=self.timeout)
        return len(join_keys)

    def find_click_context(self, pixel_code: str, join_keys: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
        """The first live context among ``join_keys`` (in the caller's order of preference).

        The most specific key is read alone first, since it usually finds the
        context (one document read per order); only when it does not are the
        others read, together.
        """
        refs = [self.collection(CLICK_CONTEXTS).document(doc_id(pixel_code, k, v)) for k, v in join_keys if v]
        now = utcnow()
        for batch in (refs[:1], refs[1:]):
            if not batch:
                continue
            _count(reads=len(batch))
            found = {snap.reference.id: snap.to_dict() for snap in self.client.get_all(batch) if snap.exists}
            for ref in batch:
                data = found.get(ref.id)
                if data and not is_expired(data, now):
                    return data
        return None

    def delete_where(self, collection: str, field: str, value: Any, limit: int = 500) -> int:
        """Delete every document with ``field == value`` (privacy requests). Returns the count."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        deleted = 0
        while True:
            docs = list(self.collection(collection).where(filter=FieldFilter(field, "==", value)).limit(limit).stream())
            _count(reads=max(1, len(docs)))  # a query is billed at least one read
            if not docs:
                return deleted
            _count(deletes=len(docs))
            batch = self.client.batch()
            for doc in docs:
                batch.delete(doc.reference)
            batch.commit()
            deleted += len(docs)


def _count(reads: int = 0, writes: int = 0, deletes: int = 0) -> None:
    """One Firestore RPC and the documents it reads, writes or deletes (see shared.infra.metrics).

    A write is counted when attempted: a create refused because the document
    exists (a duplicate claim) counts one, though Firestore does not bill it.
    """
    COUNTERS.add("firestore.rpcs")
    for name, amount in (("reads", reads), ("writes", writes), ("deletes", deletes)):
        if amount:
            COUNTERS.add(f"firestore.{name}", amount)


def _without_nones(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _merged(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """What ``set(earlier, merge=True)`` then ``set(later, merge=True)`` leaves: nested maps merge too."""
    merged = dict(earlier)
    for key, value in later.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged

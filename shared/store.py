"""Firestore adapter: click contexts, one-time claims and records, all with TTLs.

Every document carries ``expire_at`` (a timestamp) so a Firestore TTL policy
on that field deletes it; reads also check it, because TTL deletion can lag
by a day. Collections (each prefixed by ``FIRESTORE_COLLECTION_PREFIX``):

- ``click_contexts``: ttclid/_ttp, consent snapshot, page, ip, user agent and
  hashed identifiers, one document per (pixel, join key).
- ``webhook_deliveries``: delivery ids already accepted (Shopify event ids).
- ``order_events``: (platform, shop, order, event) already published.
- ``event_claims``: the sender's per-event claims (see functions/sender).
- ``dead_events``: events TikTok refused for good, kept for re-driving.

Document ids are readable keys (``|``-joined); a key that would be too long or
contains ``/`` is replaced by its SHA-256 so any input is a valid id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

CLICK_CONTEXTS = "click_contexts"
WEBHOOK_DELIVERIES = "webhook_deliveries"
ORDER_EVENTS = "order_events"
EVENT_CLAIMS = "event_claims"
DEAD_EVENTS = "dead_events"
COLLECTIONS = (CLICK_CONTEXTS, WEBHOOK_DELIVERIES, ORDER_EVENTS, EVENT_CLAIMS, DEAD_EVENTS)
TTL_FIELD = "expire_at"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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


def make_client(project: str, database: str = "(default)"):
    """A Firestore client (honours FIRESTORE_EMULATOR_HOST). Import kept local: it is slow."""
    from google.cloud import firestore

    return firestore.Client(project=project, database=database)


def store_from_settings(settings: Any) -> Store:
    """The Store a function's settings describe (project, database, collection prefix)."""
    return Store(make_client(settings.project, settings.firestore_database), settings.collection_prefix)


class Store:
    """Thin, synchronous wrapper over one Firestore client."""

    def __init__(self, client: Any, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix

    def collection(self, name: str):
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
        data = {**fields, "created_at": now, TTL_FIELD: now + ttl}
        try:
            ref.create(data)
            return True
        except gexc.AlreadyExists:
            pass
        existing = ref.get()
        if existing.exists and not is_expired(existing.to_dict(), now):
            return False
        try:
            # Take over only if nobody else did in between (precondition on update_time).
            if existing.exists:
                option = self.client.write_option(last_update_time=existing.update_time)
                ref.update(data, option=option)
            else:
                ref.create(data)
            return True
        except (gexc.AlreadyExists, gexc.FailedPrecondition):
            return False

    def release(self, collection: str, key: Sequence[object]) -> None:
        """Undo a claim whose effect did not happen (so a retry can claim again)."""
        self.collection(collection).document(doc_id(*key)).delete()

    def get(self, collection: str, key: Sequence[object]) -> dict[str, Any] | None:
        snapshot = self.collection(collection).document(doc_id(*key)).get()
        data = snapshot.to_dict() if snapshot.exists else None
        return None if is_expired(data) else data

    # --- click contexts --------------------------------------------------

    def put_click_context(
        self,
        pixel_code: str,
        join_keys: Iterable[tuple[str, str]],
        context: dict[str, Any],
        ttl: dt.timedelta,
    ) -> int:
        """Store ``context`` under every (kind, value) join key in one batched write."""
        now = utcnow()
        batch = self.client.batch()
        count = 0
        for kind, value in join_keys:
            ref = self.collection(CLICK_CONTEXTS).document(doc_id(pixel_code, kind, value))
            data = {**context, "pixel_code": pixel_code, "join_kind": kind, "updated_at": now, TTL_FIELD: now + ttl}
            # merge: a later page view without a ttclid must not erase an earlier one.
            batch.set(ref, _without_nones(data), merge=True)
            count += 1
        if count:
            batch.commit()
        return count

    def find_click_context(self, pixel_code: str, join_keys: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
        """The first live context among ``join_keys`` (in the caller's order of preference)."""
        refs = [self.collection(CLICK_CONTEXTS).document(doc_id(pixel_code, k, v)) for k, v in join_keys if v]
        if not refs:
            return None
        found = {snap.reference.id: snap.to_dict() for snap in self.client.get_all(refs) if snap.exists}
        now = utcnow()
        for ref in refs:
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
            if not docs:
                return deleted
            batch = self.client.batch()
            for doc in docs:
                batch.delete(doc.reference)
            batch.commit()
            deleted += len(docs)


def _without_nones(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}

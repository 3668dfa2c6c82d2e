"""Firestore names without Firestore: document ids are always valid, and every collection is listed for its TTL
policy.
"""

from __future__ import annotations

from shared.infra import store as store_module
from shared.infra.store import COLLECTIONS, ORDER_EVENTS, doc_id


def test_doc_ids_are_always_valid():
    assert doc_id("a", "b") == "a|b"
    assert doc_id("a/b").startswith("h_")
    assert doc_id("x" * 2000).startswith("h_") and len(doc_id("x" * 2000)) == 66
    assert doc_id("__reserved__").startswith("h_")


def test_collections_listed_for_ttl_policies():
    assert set(store_module.COLLECTIONS) == {
        "click_contexts", "webhook_deliveries", "order_events", "event_claims", "dead_events"
    }  # fmt: skip


def test_every_collection_is_known():  # what the emulator tests' no-trace checks walk through
    assert ORDER_EVENTS in COLLECTIONS

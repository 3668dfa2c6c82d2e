"""Instance counters: counted where Firestore and Pub/Sub are called, served on GET /metrics only when asked."""

from __future__ import annotations

import datetime as dt

from shared.domain.models import Envelope
from shared.infra.metrics import COUNTERS

HOUR = dt.timedelta(hours=1)


def delta(before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in COUNTERS.snapshot().items() if v != before.get(k, 0)}


def test_the_store_counts_the_documents_firestore_bills(store):
    before = COUNTERS.snapshot()
    store.put_click_contexts([("PIX", [("cart", "a"), ("customer", "1")], {"ttp": "t"}, HOUR),
                              ("PIX", [("cart", "b")], {"ttp": "u"}, HOUR)])  # fmt: skip
    assert delta(before) == {"firestore.rpcs": 1, "firestore.writes": 3}
    before = COUNTERS.snapshot()
    # The first join key is read alone; when it finds the context, that is the order's only read.
    assert store.find_click_context("PIX", [("cart", "a"), ("cart", "b"), ("cart", "missing")])["ttp"] == "t"
    assert delta(before) == {"firestore.rpcs": 1, "firestore.reads": 1}
    before = COUNTERS.snapshot()
    # When it misses, the others are read together: every document read is still counted.
    assert store.find_click_context("PIX", [("cart", "missing"), ("cart", "b"), ("cart", "a")])["ttp"] == "u"
    assert delta(before) == {"firestore.rpcs": 2, "firestore.reads": 3}
    before = COUNTERS.snapshot()
    assert store.claim_once("order_events", ("k", 1), HOUR)
    assert not store.claim_once("order_events", ("k", 1), HOUR)  # create refused, then the existing one read
    assert delta(before) == {"firestore.rpcs": 3, "firestore.writes": 2, "firestore.reads": 1}


def test_the_publisher_counts_messages_and_their_bytes(event_publisher):
    envelope = Envelope(source="collect", pixel_code="PIX", event="ViewContent", event_id="m-1",
                        event_time=1_700_000_000, consent="granted")  # fmt: skip
    before = COUNTERS.snapshot()
    event_publisher.publish([envelope, envelope.model_copy(update={"event_id": "m-2"})])
    counted = delta(before)
    assert counted["pubsub.messages"] == 2
    assert counted["pubsub.bytes"] == 2 * len(envelope.to_json_bytes())

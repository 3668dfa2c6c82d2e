"""The Firestore adapter against the real emulator."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.infra.store import CLICK_CONTEXTS, ORDER_EVENTS, TTL_FIELD, WEBHOOK_DELIVERIES, doc_id

HOUR = dt.timedelta(hours=1)


def test_claim_once_is_atomic_under_concurrency(store):
    def claim(_):
        return store.claim_once(ORDER_EVENTS, ("shopify", "s", "1", "Purchase"), HOUR)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(claim, range(20)))
    assert results.count(True) == 1


def test_every_claim_carries_an_expiry(store):
    store.claim_once(WEBHOOK_DELIVERIES, ("shopify", "event-1"), HOUR, topic="orders/paid")
    raw = store.collection(WEBHOOK_DELIVERIES).document(doc_id("shopify", "event-1")).get().to_dict()
    assert raw["topic"] == "orders/paid"
    assert raw[TTL_FIELD] - raw["created_at"] == HOUR


def test_expired_claims_are_taken_over(store):
    key = ("shopify", "event-2")
    assert store.claim_once(WEBHOOK_DELIVERIES, key, dt.timedelta(seconds=-1))
    assert store.get(WEBHOOK_DELIVERIES, key) is None
    assert store.claim_once(WEBHOOK_DELIVERIES, key, HOUR)
    assert not store.claim_once(WEBHOOK_DELIVERIES, key, HOUR)


def test_release_lets_a_retry_claim_again(store):
    key = ("woocommerce", "site", "7", "Purchase")
    assert store.claim_once(ORDER_EVENTS, key, HOUR)
    store.release(ORDER_EVENTS, key)
    assert store.claim_once(ORDER_EVENTS, key, HOUR)


def test_click_context_found_by_any_join_key_in_order_of_preference(store):
    store.put_click_context("PIX", [("cart_token", "c1"), ("checkout_token", "k1")], {"ttclid": "E.C.P.1"}, HOUR)
    store.put_click_context("PIX", [("checkout_token", "k2")], {"ttclid": "E.C.P.2"}, HOUR)
    found = store.find_click_context("PIX", [("checkout_token", "k2"), ("cart_token", "c1")])
    assert found["ttclid"] == "E.C.P.2"
    assert store.find_click_context("PIX", [("cart_token", "c1")])["ttclid"] == "E.C.P.1"
    assert store.find_click_context("OTHER", [("cart_token", "c1")]) is None
    assert store.find_click_context("PIX", [("cart_token", "")]) is None


def test_when_the_first_join_key_misses_the_others_are_read_in_order_of_preference(store):
    # The first key is read alone (one read per order when it hits); a miss, or an expired
    # context, there must still find the best of the others.
    store.put_click_context("PIX", [("cart_token", "x1")], {"ttclid": "E.C.P.expired"}, dt.timedelta(seconds=-5))
    store.put_click_context("PIX", [("checkout_token", "x2")], {"ttclid": "E.C.P.second"}, HOUR)
    store.put_click_context("PIX", [("customer", "x3")], {"ttclid": "E.C.P.third"}, HOUR)
    keys = [("checkout_token", "x2"), ("customer", "x3")]
    assert store.find_click_context("PIX", [("cart_token", "x1"), *keys])["ttclid"] == "E.C.P.second"
    assert store.find_click_context("PIX", [("cart_token", "none"), *keys])["ttclid"] == "E.C.P.second"
    assert store.find_click_context("PIX", [("cart_token", "none"), *reversed(keys)])["ttclid"] == "E.C.P.third"
    assert store.find_click_context("PIX", [("cart_token", "x1"), ("customer", "none")]) is None
    # An empty first key is skipped, not read: the next one is the first.
    assert store.find_click_context("PIX", [("cart_token", ""), ("customer", "x3")])["ttclid"] == "E.C.P.third"


def test_a_later_context_without_ttclid_keeps_the_earlier_click(store):
    store.put_click_context("PIX", [("cart_token", "c3")], {"ttclid": "E.C.P.3", "ttp": None}, HOUR)
    store.put_click_context("PIX", [("cart_token", "c3")], {"ttclid": None, "ttp": "ttp-3"}, HOUR)
    found = store.find_click_context("PIX", [("cart_token", "c3")])
    assert (found["ttclid"], found["ttp"]) == ("E.C.P.3", "ttp-3")


def test_expired_click_contexts_are_ignored(store):
    store.put_click_context("PIX", [("cart_token", "old")], {"ttclid": "E.C.P.old"}, dt.timedelta(seconds=-5))
    assert store.find_click_context("PIX", [("cart_token", "old")]) is None


def test_delete_where_removes_every_match(store):
    for i in range(7):
        store.put_click_context("PIX", [("customer", f"c{i}")], {"customer_key": "k" if i < 5 else "other"}, HOUR)
    assert store.delete_where(CLICK_CONTEXTS, "customer_key", "k", limit=2) == 5
    assert store.find_click_context("PIX", [("customer", "c6")]) is not None


def test_several_contexts_in_one_batch_leave_what_consecutive_writes_would(store):
    old = {"ttclid": "E.C.P.old", "consent": {"ad_storage": True}}
    store.put_click_context("PIX", [("cart_token", "m1")], old, HOUR)
    first = {"ttclid": None, "ttp": "ttp-a", "consent": {"ad_user_data": True}}
    second = {"ttclid": "E.C.P.new", "consent": {"ad_storage": False}}
    written = store.put_click_contexts([
        ("PIX", [("cart_token", "m1"), ("customer", "7")], first, HOUR),
        ("PIX", [("cart_token", "m1")], second, HOUR),
        ("PIX", [("cart_token", "m2")], {"ttclid": "E.C.P.m2"}, HOUR),
    ])  # fmt: skip
    assert written == 3  # m1 once (two writes merged), customer 7, m2
    m1 = store.find_click_context("PIX", [("cart_token", "m1")])
    assert (m1["ttclid"], m1["ttp"]) == ("E.C.P.new", "ttp-a")
    assert m1["consent"] == {"ad_storage": False, "ad_user_data": True}  # nested maps merged, later wins
    assert store.find_click_context("PIX", [("customer", "7")])["ttp"] == "ttp-a"
    assert store.find_click_context("PIX", [("cart_token", "m2")])["ttclid"] == "E.C.P.m2"


def test_a_batch_over_firestores_limit_is_refused_before_any_write(store):
    from shared.infra.store import MAX_BATCH_WRITES

    too_many = [("PIX", [("cart_token", f"big-{i}")], {"ttp": "t"}, HOUR) for i in range(MAX_BATCH_WRITES + 1)]
    with pytest.raises(ValueError, match="501 documents"):
        store.put_click_contexts(too_many)
    assert store.find_click_context("PIX", [("cart_token", "big-0")]) is None

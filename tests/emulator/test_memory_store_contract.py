"""The in-memory stand-in (tests/unit/memory.py) against the real Store on the Firestore emulator.

One set of checks, run against both, for every method of
:class:`shared.receive.orders.OrderStore`: what the unit tests of the order
flow assume of the stand-in is then what Firestore does, and a change to
either that the other does not follow fails here.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest

from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS
from shared.receive.orders import OrderStore
from tests.unit.memory import MemoryStore

PIXEL = "CCONTRACT"
DAY = dt.timedelta(days=1)
GONE = dt.timedelta(seconds=-1)  # written already expired: Firestore's TTL has not deleted it yet


@pytest.fixture(params=["memory", "firestore"])
def any_store(request: pytest.FixtureRequest) -> Any:
    return MemoryStore() if request.param == "memory" else request.getfixturevalue("store")


def key(*extra: str) -> tuple[str, ...]:
    return (PIXEL, uuid.uuid4().hex, *extra)


def test_both_are_order_stores(any_store: Any) -> None:
    assert isinstance(any_store, OrderStore)


def test_the_first_claim_wins_and_keeps_its_fields(any_store: Any) -> None:
    k = key()
    assert any_store.claim_once(EVENT_CLAIMS, k, DAY, state="cancelled", n=1) is True
    assert any_store.claim_once(EVENT_CLAIMS, k, DAY, state="sending", n=2) is False
    assert any_store.claim_once(EVENT_CLAIMS, k, DAY, state="sending", n=3) is False
    doc = any_store.get(EVENT_CLAIMS, k)
    assert (doc["state"], doc["n"]) == ("cancelled", 1)
    assert set(doc) == {"state", "n", "created_at", "expire_at"}
    assert dt.timedelta(hours=23) < doc["expire_at"] - doc["created_at"] <= DAY


def test_a_claim_is_per_collection_and_per_key(any_store: Any) -> None:
    k = key()
    assert any_store.claim_once(EVENT_CLAIMS, k, DAY) is True
    assert any_store.claim_once(ORDER_EVENTS, k, DAY) is True
    assert any_store.claim_once(EVENT_CLAIMS, (*k, "other"), DAY) is True
    assert any_store.get(ORDER_EVENTS, (*k, "absent")) is None


def test_an_expired_claim_is_taken_over_once(any_store: Any) -> None:
    k = key()
    assert any_store.claim_once(EVENT_CLAIMS, k, GONE, state="sent") is True
    assert any_store.get(EVENT_CLAIMS, k) is None
    assert any_store.claim_once(EVENT_CLAIMS, k, DAY, state="cancelled") is True
    assert any_store.claim_once(EVENT_CLAIMS, k, DAY, state="late") is False
    assert any_store.get(EVENT_CLAIMS, k)["state"] == "cancelled"


def test_concurrent_claims_of_one_key_have_one_winner(any_store: Any) -> None:
    k = key()
    results: dict[int, bool] = {}
    gate = threading.Barrier(6)

    def claim(i: int) -> None:
        gate.wait()
        results[i] = any_store.claim_once(EVENT_CLAIMS, k, DAY, who=i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    (winner,) = [i for i, won in results.items() if won]
    assert len(results) == 6 and any_store.get(EVENT_CLAIMS, k)["who"] == winner


def test_get_of_a_missing_or_expired_document_is_none(any_store: Any) -> None:
    assert any_store.get(ORDER_EVENTS, key()) is None
    k = key()
    assert any_store.claim_once(ORDER_EVENTS, k, GONE, outcome="skipped")
    assert any_store.get(ORDER_EVENTS, k) is None


def test_keys_firestore_cannot_take_as_ids_still_round_trip(any_store: Any) -> None:
    for k in [key("a/b"), key("x" * 600), ("__reserved__",), (PIXEL, 7, None)]:
        k = (*k, uuid.uuid4().hex) if k[0] == "__reserved__" or k[-1] is None else k
        assert any_store.claim_once(EVENT_CLAIMS, k, DAY, mark=str(k)[:20]) is True
        assert any_store.get(EVENT_CLAIMS, k)["mark"] == str(k)[:20]
        assert any_store.claim_once(EVENT_CLAIMS, k, DAY) is False


# --- click contexts -------------------------------------------------------------------------


def test_find_click_context_returns_the_first_live_one_in_the_callers_order(any_store: Any) -> None:
    cart, customer, session = (uuid.uuid4().hex for _ in range(3))
    any_store.put_click_context(PIXEL, [("customer_id", customer)], {"ttclid": "by-customer"}, DAY)
    any_store.put_click_context(PIXEL, [("shopify_cart_token", cart)], {"ttclid": "by-cart", "ttp": "t"}, DAY)
    found = any_store.find_click_context(PIXEL, [("shopify_cart_token", cart), ("customer_id", customer)])
    assert (found["ttclid"], found["ttp"], found["join_kind"]) == ("by-cart", "t", "shopify_cart_token")
    assert found["pixel_code"] == PIXEL and found["expire_at"] > found["updated_at"]
    missing_first = [("woocommerce_session", session), ("customer_id", customer), ("shopify_cart_token", cart)]
    assert any_store.find_click_context(PIXEL, missing_first)["ttclid"] == "by-customer"
    assert any_store.find_click_context(PIXEL, [("customer_id", "")]) is None  # an empty value is no key
    assert any_store.find_click_context("COTHER", [("customer_id", customer)]) is None  # per pixel
    assert any_store.find_click_context(PIXEL, [("woocommerce_session", session)]) is None
    assert any_store.find_click_context(PIXEL, []) is None


def test_find_click_context_skips_an_expired_context(any_store: Any) -> None:
    cart, customer = uuid.uuid4().hex, uuid.uuid4().hex
    any_store.put_click_context(PIXEL, [("shopify_cart_token", cart)], {"ttclid": "stale"}, GONE)
    any_store.put_click_context(PIXEL, [("customer_id", customer)], {"ttclid": "live"}, DAY)
    assert any_store.find_click_context(PIXEL, [("shopify_cart_token", cart)]) is None
    both = [("shopify_cart_token", cart), ("customer_id", customer)]
    assert any_store.find_click_context(PIXEL, both)["ttclid"] == "live"
    # A later write under the key renews it (collect's next page view).
    any_store.put_click_context(PIXEL, [("shopify_cart_token", cart)], {"ttp": "renewed"}, DAY)
    assert any_store.find_click_context(PIXEL, both)["ttp"] == "renewed"

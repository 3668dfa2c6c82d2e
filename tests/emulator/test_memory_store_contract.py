"""The in-memory stand-in (tests/unit/memory.py) against the real Store on the Firestore emulator.

One set of checks, run against both, for every method of
:class:`shared.receive.orders.OrderStore` and :class:`shared.send.claims.ClaimDocuments`:
what the unit tests of the order flow and of the sender's claims assume of the
stand-in is then what Firestore does, and a change to either that the other
does not follow fails here.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest
from google.api_core.exceptions import NotFound

from shared.infra.metrics import Counters
from shared.infra.store import (
    ALREADY_EXISTS,
    DEAD_EVENTS,
    EVENT_CLAIMS,
    OK,
    ORDER_EVENTS,
    TTL_FIELD,
    Create,
    Delete,
    Merge,
    Update,
    doc_id,
    utcnow,
)
from shared.receive.orders import OrderStore
from shared.send.claims import ClaimDocuments
from tests.unit.memory import FAILED_PRECONDITION, NOT_FOUND, MemoryStore

PIXEL = "CCONTRACT"
DAY = dt.timedelta(days=1)
GONE = dt.timedelta(seconds=-1)  # written already expired: Firestore's TTL has not deleted it yet


@pytest.fixture(params=["memory", "firestore"])
def any_store(request: pytest.FixtureRequest, store: Any) -> Any:
    return MemoryStore() if request.param == "memory" else store


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
    assert set(doc) == {"state", "n", "created_at", "day", "expire_at"}
    assert doc["day"] == doc["created_at"].astimezone(dt.timezone.utc).date().isoformat()
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


# --- the sender's claims (shared.send.claims.ClaimDocuments) ------------------------------------


def test_both_are_claim_documents(any_store: Any) -> None:
    assert isinstance(any_store, ClaimDocuments)


def test_a_bulk_create_fails_alone_on_an_existing_document_expired_or_not(any_store: Any) -> None:
    live, expired, new = key(), key(), key()
    any_store.put(EVENT_CLAIMS, live, {"n": 1})
    any_store.put(EVENT_CLAIMS, expired, {"n": 1, TTL_FIELD: utcnow() - DAY})  # TTL has not deleted it yet
    counters = Counters()
    ops = [Create(EVENT_CLAIMS, k, {"n": 2}) for k in (live, new, expired)]
    results = any_store.bulk(ops, counters=counters, timeout=15)
    assert [code for code, _ in results] == [ALREADY_EXISTS, OK, ALREADY_EXISTS]
    assert results[0][1] is None and results[1][1] is not None and results[2][1] is None
    assert [f.data["n"] for f in any_store.get_many(EVENT_CLAIMS, [live, new, expired])] == [1, 2, 1]
    assert counters.snapshot() == {"firestore.rpcs": 1, "firestore.writes": 3}


def test_get_many_keeps_the_order_and_returns_expired_documents_and_none_for_missing_ones(any_store: Any) -> None:
    expired, missing, live = key(), key(), key()
    any_store.put(EVENT_CLAIMS, expired, {"state": "sent", TTL_FIELD: utcnow() - DAY})
    any_store.put(EVENT_CLAIMS, live, {"state": "sending"})
    counters = Counters()
    found = any_store.get_many(EVENT_CLAIMS, [live, missing, expired], counters=counters)
    assert [f.data and f.data["state"] for f in found] == ["sending", None, "sent"]
    assert found[1].update_time is None and found[0].update_time and found[2].update_time
    assert counters.snapshot() == {"firestore.rpcs": 1, "firestore.reads": 3}
    assert any_store.get(EVENT_CLAIMS, expired) is None  # a plain read treats it as gone


def test_an_update_holds_only_while_nobody_wrote_since_and_needs_the_document(any_store: Any) -> None:
    k = key()
    ((_, created),) = any_store.bulk([Create(EVENT_CLAIMS, k, {"state": "sending", "m": {"a": 1}, "keep": 1})])
    assert any_store.get_many(EVENT_CLAIMS, [k])[0].update_time == created  # the write's time is the read's
    ((code, updated),) = any_store.bulk([Update(EVENT_CLAIMS, k, {"state": "sent", "m": {"b": 2}}, created)])
    assert code == OK and updated != created
    doc = any_store.get_many(EVENT_CLAIMS, [k])[0].data
    assert doc == {"state": "sent", "m": {"b": 2}, "keep": 1}  # its fields replaced, maps whole, others kept
    stale = any_store.bulk([Update(EVENT_CLAIMS, k, {"state": "late"}, created)])
    assert stale == [(FAILED_PRECONDITION, None)]
    gone = key()
    results = any_store.bulk([Update(EVENT_CLAIMS, gone, {"x": 1}), Update(EVENT_CLAIMS, key(), {"x": 1}, created)])
    assert results == [(NOT_FOUND, None), (FAILED_PRECONDITION, None)]
    assert any_store.get_many(EVENT_CLAIMS, [k, gone])[0].data["state"] == "sent"
    assert any_store.get_many(EVENT_CLAIMS, [gone])[0].data is None


def test_a_delete_with_a_precondition_deletes_only_the_version_it_names(any_store: Any) -> None:
    k = key()
    ((_, first),) = any_store.bulk([Create(EVENT_CLAIMS, k, {"who": "first"})])
    ((_, second),) = any_store.bulk([Merge(EVENT_CLAIMS, k, {"who": "second"})])
    counters = Counters()
    results = any_store.bulk([Delete(EVENT_CLAIMS, k, first), Delete(EVENT_CLAIMS, key(), first)], counters=counters)
    assert results == [(FAILED_PRECONDITION, None), (FAILED_PRECONDITION, None)]
    assert counters.snapshot() == {"firestore.rpcs": 1, "firestore.deletes": 2}
    assert any_store.get_many(EVENT_CLAIMS, [k])[0].data == {"who": "second"}
    assert any_store.bulk([Delete(EVENT_CLAIMS, k, second), Delete(EVENT_CLAIMS, key())]) == [(OK, None), (OK, None)]
    assert any_store.get_many(EVENT_CLAIMS, [k])[0].data is None


def test_merge_merges_maps_and_increment_counts_from_nothing_or_a_non_number(any_store: Any) -> None:
    k, text = key(), key()
    times = [any_store.bulk([Merge(DEAD_EVENTS, k, {"n": any_store.increment(1), "m": {"a": 1}})])[0][1]]
    times.append(any_store.bulk([Merge(DEAD_EVENTS, k, {"n": any_store.increment(2), "m": {"b": 2}})])[0][1])
    assert any_store.get_many(DEAD_EVENTS, [k])[0].data == {"n": 3, "m": {"a": 1, "b": 2}}
    any_store.bulk([Merge(DEAD_EVENTS, text, {"n": "three"})])
    times.append(any_store.bulk([Merge(DEAD_EVENTS, text, {"n": any_store.increment(1)})])[0][1])
    assert any_store.get_many(DEAD_EVENTS, [text])[0].data == {"n": 1}
    assert times == sorted(times) and len(set(times)) == 3  # a new update time on every write


def test_one_document_twice_in_one_bulk_write_is_refused_whole(any_store: Any) -> None:
    k, other = key(), key()
    with pytest.raises(Exception, match="more than once"):
        any_store.bulk([Create(EVENT_CLAIMS, other, {}), Merge(EVENT_CLAIMS, k, {}), Delete(EVENT_CLAIMS, k)])
    assert any_store.get_many(EVENT_CLAIMS, [other])[0].data is None


def test_put_replaces_and_live_documents_lists_the_live_ones_by_field(any_store: Any) -> None:
    event = uuid.uuid4().hex
    created = key()
    any_store.bulk([Create(DEAD_EVENTS, created, {"event_id": event, "old": True})])
    first = any_store.put(DEAD_EVENTS, created, {"event_id": event, "state": "dead"})
    expired = any_store.put(DEAD_EVENTS, key(), {"event_id": event, TTL_FIELD: utcnow() - DAY})
    slashed = key("c/d")
    second = any_store.put(DEAD_EVENTS, slashed, {"event_id": event, TTL_FIELD: utcnow() + DAY})
    any_store.put(DEAD_EVENTS, key(), {"event_id": "other"})
    listed = dict(any_store.live_documents(DEAD_EVENTS, ("event_id", event)))
    assert set(listed) == {first, second} and expired not in listed and second == doc_id(*slashed)
    assert listed[first] == {"event_id": event, "state": "dead"}  # put replaced the created fields
    assert {first, second} <= {id_ for id_, _ in any_store.live_documents(DEAD_EVENTS)}
    any_store.update_by_id(DEAD_EVENTS, first, {"state": "redriven"})
    assert dict(any_store.live_documents(DEAD_EVENTS, ("state", "redriven"))) == {
        first: {"event_id": event, "state": "redriven"}
    }
    with pytest.raises(NotFound):
        any_store.update_by_id(DEAD_EVENTS, "missing-" + uuid.uuid4().hex, {"state": "redriven"})

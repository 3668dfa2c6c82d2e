"""Unit tests of the order flow (shared.receive.orders) against the in-memory stand-ins.

No emulator: what is checked here is the flow's own logic (consent, the click
join, weak points, the tombstone, what is written when). That Firestore
behaves like the stand-in is ``tests/emulator/test_memory_store_contract.py``'s job;
the webhooks' emulator tests still run the same flow for real.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from shared.config import ConsentPolicy, PixelConfig
from shared.domain.events import ORDER_CLOCK_AHEAD_SECONDS
from shared.domain.hashing import hash_email, sha256_hex
from shared.domain.identity import RawIdentity
from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS
from shared.outcome import Outcome
from shared.receive.orders import (
    JOIN_CUSTOMER,
    JOIN_SHOPIFY_CART,
    MAX_EVENT_AGE,
    OUTCOME_RECORD,
    OrderEvent,
    OrderStore,
    Publisher,
    block_purchase,
    build_envelope,
    process_order_event,
    record_outcome,
)
from tests.unit.memory import MemoryPublisher, MemoryStore

PIXEL = PixelConfig(pixel_code="CUNIT", test_event_code="TEST1")
NOW = 1_800_000_000
CART = "cart-1"
GRANTED = {"granted": True}
DENIED = {"granted": False}


def make_order(event: str = "Purchase", *, identity: RawIdentity | None = None, event_time: int = NOW - 60,
               properties: dict[str, Any] | None = None, join_keys: Any = None) -> OrderEvent:  # fmt: skip
    return OrderEvent(
        "shopify", "s.myshopify.com", "1001", event, event_time,
        identity or RawIdentity(emails=["buyer@example.com"]),
        {"currency": "USD", "value": 25.0, "order_id": "1001"} if properties is None else properties,
        join_keys=[(JOIN_SHOPIFY_CART, CART)] if join_keys is None else join_keys,
    )  # fmt: skip


def seed(store: MemoryStore, **context: Any) -> None:
    store.put_click_context(PIXEL.pixel_code, [(JOIN_SHOPIFY_CART, CART)], context, dt.timedelta(days=7))


def run(order: OrderEvent, store: MemoryStore, publisher: MemoryPublisher, policy: ConsentPolicy = "opt-in",
        **kwargs: Any) -> Outcome:  # fmt: skip
    return process_order_event(order, pixel=PIXEL, policy=policy, store=store, publisher=publisher,
                               default_region="US", now=lambda: NOW + 0.7, **kwargs)  # fmt: skip


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


def test_the_stand_ins_are_what_the_flow_asks_for(store: MemoryStore, publisher: MemoryPublisher) -> None:
    assert isinstance(store, OrderStore) and isinstance(publisher, Publisher)
    assert not isinstance(object(), OrderStore)


# --- consent --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consent", "policy", "expected"),
    [
        (GRANTED, "opt-in", "granted"),
        (GRANTED, "opt-out", "granted"),
        ({"marketing_allowed": True, "sale_of_data_allowed": False}, "opt-in", "granted"),
        (None, "opt-out", "policy_opt_out"),
    ],
)
def test_an_order_consent_allows_is_published_and_nothing_is_written(
    store: MemoryStore, publisher: MemoryPublisher, consent: Any, policy: ConsentPolicy, expected: str
) -> None:
    seed(store, consent=consent, ttclid="E.C.P.ctx")
    outcome = run(make_order(), store, publisher, policy)
    (envelope,) = publisher.envelopes
    assert (outcome.kind, outcome.event_id, outcome.reason) == ("published", envelope.event_id, "Purchase published")
    assert outcome.details == {"click": True, "limited_data_use": envelope.limited_data_use}
    assert envelope.consent == expected and envelope.received_at == NOW
    assert envelope.limited_data_use is (consent is not None and consent.get("sale_of_data_allowed") is False)
    assert store.live(ORDER_EVENTS) == [] and store.live(EVENT_CLAIMS) == []  # the sender's claim is the order's


@pytest.mark.parametrize(
    ("consent", "policy", "reason", "with_context"),
    [
        (DENIED, "opt-in", "denied", True),
        (DENIED, "opt-out", "denied", True),  # an explicit denial beats an opt-out policy
        ({"ad_storage": "granted", "ad_user_data": "denied"}, "opt-out", "denied", True),
        (None, "opt-in", "no_consent", True),  # a context without consent
        ("no context", "opt-in", "no_consent", False),
    ],
)
def test_a_withheld_order_is_recorded_once_and_not_published(
    store: MemoryStore, publisher: MemoryPublisher, consent: Any, policy: ConsentPolicy, reason: str,
    with_context: bool,
) -> None:  # fmt: skip
    if with_context:
        seed(store, consent=consent, ttclid="E.C.P.ctx")
    order = make_order()
    first = run(order, store, publisher, policy)
    again = run(order, store, publisher, policy)  # the platform's retry
    assert first == again
    assert (first.kind, first.reason, first.event_id) == ("withheld_consent", f"consent {reason}", order.event_id)
    assert first.details == {"consent": reason, "click_context": with_context}
    assert publisher.envelopes == []
    (record,) = store.live(ORDER_EVENTS)
    assert (record["event_id"], record["outcome"], record["consent"]) == (order.event_id, "withheld_consent", reason)
    assert store.get(ORDER_EVENTS, (OUTCOME_RECORD, order.event_id)) == record


def test_a_grant_after_a_withheld_delivery_publishes_the_next_one(
    store: MemoryStore, publisher: MemoryPublisher
) -> None:
    order = make_order()
    seed(store, consent=DENIED)
    assert run(order, store, publisher).kind == "withheld_consent"
    seed(store, consent=GRANTED)  # the shopper changed their mind; Shopify delivers orders/paid
    outcome = run(order, store, publisher)
    assert outcome.kind == "published" and [e.event_id for e in publisher.envelopes] == [order.event_id]
    assert len(store.live(ORDER_EVENTS)) == 1  # the withheld record stays (the report counts it), no claim was taken


def test_an_order_without_join_keys_reads_no_context(store: MemoryStore, publisher: MemoryPublisher) -> None:
    outcome = run(make_order(join_keys=[]), store, publisher, "opt-out")
    assert outcome.kind == "published" and outcome.details["click"] is False
    assert "find_click_context" not in store.calls


# --- the click join -------------------------------------------------------------------------


def test_click_ids_come_from_the_order_first_then_the_context(store: MemoryStore, publisher: MemoryPublisher) -> None:
    seed(store, consent=GRANTED, ttclid="E.C.P.ctx", ttp="ttp.ctx", user_agent="Mozilla/5.0 ctx", locale="en-US",
         page_url="https://shop.example/cart")  # fmt: skip
    identity = RawIdentity(ttclid="E.C.P.order", user_agent="Mozilla/5.0 order")
    run(make_order(identity=identity), store, publisher)
    (envelope,) = publisher.envelopes
    user = envelope.user
    assert (user.ttclid, user.ttp) == ("E.C.P.order", "ttp.ctx")
    assert (user.user_agent, user.locale) == ("Mozilla/5.0 order", "en-US")
    assert envelope.page is not None and envelope.page.url == "https://shop.example/cart"


def test_the_first_join_key_with_a_live_context_wins(store: MemoryStore, publisher: MemoryPublisher) -> None:
    store.put_click_context(PIXEL.pixel_code, [(JOIN_CUSTOMER, "c9")], {"consent": GRANTED, "ttclid": "E.C.P.customer"},
                            dt.timedelta(days=7))  # fmt: skip
    seed(store, consent=GRANTED, ttclid="E.C.P.cart")
    run(make_order(join_keys=[(JOIN_SHOPIFY_CART, "unknown"), (JOIN_CUSTOMER, "c9"), (JOIN_SHOPIFY_CART, CART)]),
        store, publisher)  # fmt: skip
    assert publisher.envelopes[0].user.ttclid == "E.C.P.customer"


def test_the_browsers_email_never_stands_beside_the_orders_own(store: MemoryStore, publisher: MemoryPublisher) -> None:
    """A shopper must not pin their verified order to someone else's TikTok identity."""
    victim = sha256_hex("victim@example.com")
    seed(store, consent=GRANTED, user={"email": [victim], "external_id": [sha256_hex("42")]})
    run(make_order(), store, publisher)  # the order carries buyer@example.com
    user = publisher.envelopes[0].user
    assert user.email == [hash_email("buyer@example.com")]
    # A kind the order carries none of is taken from the context.
    assert user.external_id == [sha256_hex("42")] and user.phone == []


def test_the_browsers_phone_fills_an_order_without_one(store: MemoryStore, publisher: MemoryPublisher) -> None:
    phone = sha256_hex("+12133734253")
    seed(store, consent=GRANTED, user={"phone": [phone], "email": [sha256_hex("other@example.com")]})
    run(make_order(identity=RawIdentity(emails=["buyer@example.com"], external_ids=["7"])), store, publisher)
    user = publisher.envelopes[0].user
    assert user.phone == [phone]
    assert user.email == [hash_email("buyer@example.com")] and user.external_id == [sha256_hex("7")]


def test_hashed_identifiers_from_the_context_fill_an_empty_kind_up_to_ten(
    store: MemoryStore, publisher: MemoryPublisher
) -> None:
    stored = [sha256_hex(f"other{i}@example.com") for i in range(12)]
    seed(store, consent=GRANTED, user={"email": stored + stored[:2]})
    run(make_order(identity=RawIdentity()), store, publisher)
    assert publisher.envelopes[0].user.email == stored[:10]  # no repeat, at most 10


def test_a_click_id_of_the_wrong_shape_from_an_old_context_is_dropped(
    store: MemoryStore, publisher: MemoryPublisher
) -> None:
    seed(store, consent=GRANTED, ttclid="jo@example.com", ttp="+1 213 373 4253", locale="not a locale")
    run(make_order(identity=RawIdentity()), store, publisher)
    user = publisher.envelopes[0].user
    assert (user.ttclid, user.ttp, user.locale) == (None, None, None)


@pytest.mark.parametrize(("stored", "expected"), [("192.168.0.1", None), ("10.1.2.3", None),
                                                  ("203.0.113.9", "203.0.113.9")])  # fmt: skip
def test_a_private_ip_from_an_old_context_is_dropped(
    store: MemoryStore, publisher: MemoryPublisher, stored: str, expected: str | None
) -> None:
    seed(store, consent=GRANTED, ip=stored)  # stored before collect dropped private addresses
    run(make_order(identity=RawIdentity()), store, publisher)
    assert publisher.envelopes[0].user.ip == expected


def test_the_orders_own_ip_is_kept_over_the_contexts(store: MemoryStore, publisher: MemoryPublisher) -> None:
    seed(store, consent=GRANTED, ip="198.51.100.7")
    run(make_order(identity=RawIdentity(ip="203.0.113.20")), store, publisher)
    assert publisher.envelopes[0].user.ip == "203.0.113.20"


# --- weak points: sent all the same, flagged -------------------------------------------------


def _warnings(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("severity") == "WARNING"]


def test_an_order_outside_the_attribution_window_is_skipped_recorded_and_never_published(
    store: MemoryStore, publisher: MemoryPublisher, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(store, consent=GRANTED)
    old = NOW - int(MAX_EVENT_AGE.total_seconds()) - 86_400
    outcome = run(make_order(event_time=old), store, publisher)
    assert outcome.kind == "skipped" and outcome.details == {"rule": "outside_window"}
    assert "8.0 days old, past ORDER_MAX_EVENT_AGE_DAYS (7)" in outcome.reason
    assert publisher.envelopes == [] and "find_click_context" not in store.calls  # refused before any read
    record = store.get(ORDER_EVENTS, (OUTCOME_RECORD, outcome.event_id))
    assert record is not None and (record["outcome"], record["rule"]) == ("skipped", "outside_window")
    assert _warnings(capsys.readouterr().out) == []  # an outcome, not a warning: the entry point logs it once


def test_an_order_further_ahead_than_a_platforms_clock_may_be_is_skipped(
    store: MemoryStore, publisher: MemoryPublisher
) -> None:
    seed(store, consent=GRANTED)
    ahead = run(make_order(event_time=NOW + ORDER_CLOCK_AHEAD_SECONDS + 60), store, publisher)
    assert ahead.kind == "skipped" and ahead.details["rule"] == "outside_window" and "ahead" in ahead.reason
    assert publisher.envelopes == []
    assert run(make_order(event_time=NOW + ORDER_CLOCK_AHEAD_SECONDS), store, publisher).kind == "published"


def test_the_window_follows_the_injected_clock_and_max_event_age(
    store: MemoryStore, publisher: MemoryPublisher
) -> None:
    seed(store, consent=GRANTED)
    order = make_order(event_time=NOW - 3 * 86_400)
    assert run(order, store, publisher).kind == "published"
    assert run(order, store, publisher, max_event_age=dt.timedelta(days=2)).kind == "skipped"
    assert len(publisher.envelopes) == 1


def test_a_cancellation_is_not_subject_to_the_window(store: MemoryStore) -> None:
    # An old order's cancellation still blocks its Purchase: block_purchase knows no event_time.
    assert block_purchase(store, PIXEL.pixel_code, make_order(event_time=NOW - 90 * 86_400).event_id)


@pytest.mark.parametrize("properties", [{}, {"value": 5.0}, {"currency": "USD"}])
def test_a_purchase_without_value_or_currency_is_published_and_flagged(
    store: MemoryStore, publisher: MemoryPublisher, properties: dict[str, Any]
) -> None:
    seed(store, consent=GRANTED)
    outcome = run(make_order(properties=properties), store, publisher)
    assert outcome.kind == "published" and outcome.details["no_value"] is True


def test_another_event_without_value_is_not_flagged(store: MemoryStore, publisher: MemoryPublisher) -> None:
    seed(store, consent=GRANTED)
    outcome = run(make_order("PlaceAnOrder", properties={}), store, publisher)
    assert outcome.kind == "published" and "no_value" not in outcome.details


# --- failures -------------------------------------------------------------------------------


def test_a_publish_failure_raises_and_writes_nothing(store: MemoryStore, publisher: MemoryPublisher) -> None:
    seed(store, consent=GRANTED)
    before = dict(store.docs)
    publisher.fail = TimeoutError("pubsub down")
    with pytest.raises(TimeoutError):
        run(make_order(), store, publisher)
    assert store.docs == before and store.calls[1:] == ["find_click_context"]  # [0] is the seed
    assert publisher.envelopes == []


def test_a_context_read_failure_raises_and_publishes_nothing(store: MemoryStore, publisher: MemoryPublisher) -> None:
    store.fail = ConnectionError("firestore down")
    with pytest.raises(ConnectionError):
        run(make_order(), store, publisher)
    assert publisher.envelopes == [] and store.docs == {}


def test_record_outcome_never_raises_when_the_store_fails(
    store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.fail = ConnectionError("firestore down")
    record_outcome(store, Outcome("skipped", "test order", "ev-1"), rule="test")
    assert store.calls == ["claim_once"] and store.docs == {}
    (warning,) = _warnings(capsys.readouterr().out)
    assert (warning["error"], warning["event_id"]) == ("ConnectionError", "ev-1")


def test_a_withheld_answer_stands_when_its_record_cannot_be_written(
    store: MemoryStore, publisher: MemoryPublisher
) -> None:
    store.fail = ConnectionError("firestore down")
    outcome = run(make_order(join_keys=[]), store, publisher)  # no join key: the record is the only store call
    assert (outcome.kind, outcome.details["consent"]) == ("withheld_consent", "no_consent")
    assert publisher.envelopes == [] and store.calls == ["claim_once"]


def test_record_outcome_without_an_event_id_writes_nothing(store: MemoryStore) -> None:
    record_outcome(store, Outcome("skipped", "no id"))
    assert store.calls == [] and store.docs == {}


def test_record_outcome_keeps_the_first_answer(store: MemoryStore) -> None:
    record_outcome(store, Outcome("skipped", "pos", "ev-2"), rule="pos")
    record_outcome(store, Outcome("withheld_consent", "later", "ev-2"), consent="denied")
    (record,) = store.live(ORDER_EVENTS)
    assert (record["outcome"], record["rule"], "consent" in record) == ("skipped", "pos", False)


# --- the cancellation's tombstone -----------------------------------------------------------


def test_block_purchase_is_true_on_the_first_and_a_repeated_cancellation(store: MemoryStore) -> None:
    assert block_purchase(store, PIXEL.pixel_code, "ev-p", source="shopify", order_ref="o") is True
    assert block_purchase(store, PIXEL.pixel_code, "ev-p", source="shopify", order_ref="o") is True
    doc = store.get(EVENT_CLAIMS, (PIXEL.pixel_code, "Purchase", "ev-p"))
    assert doc is not None
    assert {k: doc[k] for k in ("pixel_code", "event", "event_id", "state", "source", "order_ref")} == {
        "pixel_code": PIXEL.pixel_code, "event": "Purchase", "event_id": "ev-p", "state": "cancelled",
        "source": "shopify", "order_ref": "o",
    }  # fmt: skip
    assert len(store.live(EVENT_CLAIMS)) == 1


@pytest.mark.parametrize("state", ["sending", "sent"])
def test_block_purchase_is_false_once_the_sender_claimed_the_purchase(store: MemoryStore, state: str) -> None:
    key = (PIXEL.pixel_code, "Purchase", "ev-p")
    assert store.claim_once(EVENT_CLAIMS, key, dt.timedelta(days=8), state=state)
    assert block_purchase(store, PIXEL.pixel_code, "ev-p", source="shopify") is False
    assert store.get(EVENT_CLAIMS, key)["state"] == state  # type: ignore[index]  # the sender's claim stands


def test_block_purchase_takes_over_an_expired_sender_claim() -> None:
    clock = {"now": dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)}
    store = MemoryStore(clock=lambda: clock["now"])
    key = (PIXEL.pixel_code, "Purchase", "ev-p")
    assert store.claim_once(EVENT_CLAIMS, key, dt.timedelta(days=8), state="sent")
    clock["now"] += dt.timedelta(days=8, seconds=1)
    assert block_purchase(store, PIXEL.pixel_code, "ev-p") is True
    assert store.get(EVENT_CLAIMS, key)["state"] == "cancelled"  # type: ignore[index]


# --- the pure part --------------------------------------------------------------------------


def test_build_envelope_stamps_the_callers_clock_and_reads_no_store() -> None:
    order = make_order()
    envelope, outcome = build_envelope(order, PIXEL, {"consent": GRANTED}, "opt-in", "US", received_at=NOW)
    assert outcome is None and envelope is not None
    assert (envelope.received_at, envelope.event_id, envelope.test_event_code) == (NOW, order.event_id, "TEST1")
    assert (envelope.pixel_code, envelope.source, envelope.properties.value) == ("CUNIT", "shopify", 25.0)

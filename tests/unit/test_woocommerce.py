"""WooCommerce domain rules without I/O: ping, paid/never-paid rules, the v3 order mapping, parked records."""

from __future__ import annotations

import copy
import io
import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import PixelConfig
from shared.domain import hashing
from shared.domain.consent import ConsentSnapshot, with_checkout_consent
from shared.domain.identity import build_user
from shared.outcome import Kind
from shared.receive.orders import JOIN_CUSTOMER, JOIN_WOO_ORDER_KEY, JOIN_WOO_SESSION, build_envelope
from shared.receive.woocommerce.mapping import (
    UnusableOrder,
    checkout_consent,
    event_time,
    ignore_reason,
    is_ping,
    map_order,
)
from shared.receive.woocommerce.parking import order_from_record as _order_from_record
from shared.receive.woocommerce.parking import park_envelope, park_order, parked_records, record_event_id
from shared.receive.woocommerce.settings import WooCommerceSiteConfig
from shared.tiktok.request import envelopes_to_request
from tests.helpers import load_fixture, wait_until

NOW = 1_800_000_000.0
SITE = WooCommerceSiteConfig(url="https://www.Shop.example/", pixel_code="CPIX")
PIXEL = PixelConfig(pixel_code="CPIX")


def documented_order(**changes: Any) -> dict[str, Any]:
    order = copy.deepcopy(load_fixture("woocommerce/order_727_processing_documented.json"))
    order.update(changes)
    return order


def with_meta(order: dict[str, Any], **meta: str) -> dict[str, Any]:
    order["meta_data"] = order.get("meta_data", []) + [
        {"id": 9000 + i, "key": key, "value": value} for i, (key, value) in enumerate(meta.items())
    ]
    return order


# --- ping -----------------------------------------------------------------------


def test_the_setup_ping_is_recognised_without_headers():
    assert is_ping({"Content-Type": "application/x-www-form-urlencoded"}, b"webhook_id=42")
    assert is_ping({}, b"webhook_id=7\n")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"X-WC-Webhook-Signature": "abc"}, b"webhook_id=42"),
        ({"x-wc-webhook-topic": "order.created"}, b"webhook_id=42"),
        ({}, b"webhook_id=42&other=1"),
        ({}, b"webhook_id="),
        ({}, b'{"webhook_id": 42}'),
        ({}, b""),
    ],
)
def test_anything_else_is_not_a_ping(headers, body):
    assert not is_ping(headers, body)


# --- when an order is a Purchase --------------------------------------------------


@pytest.mark.parametrize("status", ["processing", "completed", "wc-processing", "Completed"])
def test_paid_statuses_make_a_purchase(status):
    assert ignore_reason("order.updated", documented_order(status=status, date_paid_gmt=None)) is None


def test_date_paid_makes_a_purchase_whatever_the_custom_status():
    order = documented_order(status="awaiting-shipment", date_paid_gmt="2026-01-02T03:04:05")
    assert ignore_reason("order.created", order) is None


@pytest.mark.parametrize("status", ["pending", "on-hold", "checkout-draft"])
def test_unpaid_orders_wait(status):
    reason = ignore_reason("order.created", documented_order(status=status, date_paid_gmt=None))
    assert reason is not None and "not paid yet" in reason


@pytest.mark.parametrize("status", ["refunded", "failed", "cancelled", "trash"])
def test_refunded_failed_cancelled_never_purchase_even_with_a_payment_date(status):
    # A refunded order keeps date_paid_gmt: the status must win.
    order = documented_order(status=status)
    assert order["date_paid_gmt"]
    assert f"status {status} never" in ignore_reason("order.updated", order)


@pytest.mark.parametrize("topic", ["order.deleted", "product.updated", "action.woocommerce_x", ""])
def test_other_topics_are_ignored(topic):
    assert "is not handled" in ignore_reason(topic, documented_order())


# --- mapping the documented order ----------------------------------------------


def test_documented_order_maps_to_a_purchase():
    event = map_order(documented_order(), SITE, NOW)
    assert event.event_id == "woocommerce:shop.example:order:727:Purchase"
    assert event.event_time == 1490210888  # date_paid_gmt 2017-03-22T19:28:08, read as UTC
    assert event.properties == {
        "currency": "USD",
        "value": 29.35,
        "content_type": "product",
        "contents": [
            {"content_id": "93", "content_name": "Woo Single #1", "price": 3.0, "quantity": 2},
            {
                "content_id": "22",
                "content_name": "Ship Your Idea – Color: Black, Size: M Test",
                "price": 12.0,
                "quantity": 1,
            },
        ],  # fmt: skip
        "num_items": 3,
        "order_id": "727",
        "shop_id": "shop.example",
    }
    assert event.join_keys == [(JOIN_WOO_ORDER_KEY, "wc_order_58d2d042d1d")]


def test_guest_identity_comes_from_billing_and_is_hashed_once():
    user = build_user(map_order(documented_order(), SITE, NOW).identity, "US")
    assert user.email == [hashing.sha256_hex("john.doe@example.com")]
    assert user.first_name == hashing.sha256_hex("john")
    assert user.zip_code == hashing.sha256_hex("94103")
    assert (user.city, user.state, user.country) == ("sanfrancisco", "ca", "us")
    assert user.external_id == []  # customer_id 0: a guest


def test_phone_is_parsed_with_the_billing_country():
    order = documented_order(customer_id=31, billing={**documented_order()["billing"], "country": "GB",
                                                      "phone": "020 7946 0958"})  # fmt: skip
    user = build_user(map_order(order, SITE, NOW).identity, "US")
    assert user.phone == [hashing.sha256_hex("+442079460958")]
    assert user.external_id == [hashing.sha256_hex("31")]


def test_logged_in_customer_adds_external_id_and_customer_join_key():
    event = map_order(with_meta(documented_order(customer_id=5), _tt_session="sess-1"), SITE, NOW)
    assert event.identity.external_ids == ["5"]
    assert event.join_keys == [
        (JOIN_WOO_ORDER_KEY, "wc_order_58d2d042d1d"),
        (JOIN_WOO_SESSION, "sess-1"),
        (JOIN_CUSTOMER, "5"),
    ]


def test_click_ids_ip_and_user_agent_come_from_the_order():
    order = with_meta(
        documented_order(customer_ip_address="203.0.113.9", customer_user_agent="Mozilla/5.0 Test"),
        _ttclid="E.C.P.abc",
        _ttp="ttp-cookie",
    )
    user = build_user(map_order(order, SITE, NOW).identity, "US")
    assert (user.ttclid, user.ttp, user.ip, user.user_agent) == ("E.C.P.abc", "ttp-cookie", "203.0.113.9",
                                                                 "Mozilla/5.0 Test")  # fmt: skip


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("product_id", ["93", "22"]), ("variation_id", ["93", "23"]), ("sku", [None, "Bar3"])],
)
def test_content_id_follows_the_site_setting(choice, expected):
    site = WooCommerceSiteConfig(url="shop.example", pixel_code="CPIX", content_id=choice)
    contents = map_order(documented_order(), site, NOW).properties["contents"]
    assert [c.get("content_id") for c in contents] == expected


def test_event_time_prefers_paid_then_created_then_now():
    assert event_time({"date_paid_gmt": "2026-01-01T00:00:00", "date_created_gmt": "2025-12-31T00:00:00"}, NOW) == (
        1767225600
    )
    assert event_time({"date_paid_gmt": None, "date_created_gmt": "2025-12-31T00:00:00"}, NOW) == 1767139200
    assert event_time({"date_paid_gmt": "garbage", "date_created_gmt": "1999-01-01T00:00:00"}, NOW) == int(NOW)
    assert event_time({"date_paid_gmt": "2099-01-01T00:00:00"}, NOW) == int(NOW)


def test_an_order_without_an_id_is_unusable_and_says_which_field():
    with pytest.raises(UnusableOrder, match="field id"):
        map_order(documented_order(id=None), SITE, NOW)


def test_nonsense_amounts_are_dropped_not_sent():
    order = documented_order(total="-5", currency="dollars", line_items=[{"product_id": 1, "price": "NaN"}])
    properties = map_order(order, SITE, NOW).properties
    assert "value" not in properties and "currency" not in properties
    assert properties["contents"] == [{"content_id": "1"}]


# --- consent at checkout ----------------------------------------------------------


@pytest.mark.parametrize(("value", "granted"), [("granted", True), ("DENIED", False), ("maybe", None), (None, None)])
def test_checkout_consent_meta(value, granted):
    order = with_meta(documented_order(), _tt_consent=value) if value else documented_order()
    snapshot = checkout_consent(order)
    assert (snapshot.granted if snapshot else None) is granted


def test_checkout_consent_replaces_the_stored_snapshot_and_keeps_the_click():
    stored = {"ttclid": "E.C.P.1", "consent": {"granted": True}}
    merged = with_checkout_consent(stored, ConsentSnapshot(granted=False))
    assert merged == {"ttclid": "E.C.P.1", "consent": {"granted": False}}
    assert with_checkout_consent(None, ConsentSnapshot(granted=True)) == {"consent": {"granted": True}}
    assert with_checkout_consent(stored, None) is stored


# --- parked records ------------------------------------------------------------------


def _as_log_lines(outcome) -> str:
    # What shared.infra.log writes: one JSON object per line, other lines around it.
    record = {"severity": "ERROR", "message": outcome.reason, "outcome": outcome.kind, **outcome.details}
    return "\n".join(["not json", json.dumps({"outcome": "published"}), json.dumps(record), ""])


def test_a_parked_order_round_trips_with_hashes_only():
    order = with_meta(documented_order(customer_id=8, customer_ip_address="203.0.113.9"), _ttclid="E.C.P.z")
    event = map_order(order, SITE, NOW)
    outcome = park_order(event, ConsentSnapshot(granted=True), "US", "firestore unavailable")
    assert outcome.kind == Kind.PARKED
    text = "".join(outcome.details["replay"])
    assert "john.doe@example.com" not in text and "John" not in text and "94103" not in text
    (record,) = parked_records(_as_log_lines(outcome))
    assert record_event_id(record) == event.event_id
    again = _order_from_record(record["order"])
    assert build_user(again.identity, "US") == build_user(event.identity, "US")
    assert (again.event_id, again.event_time, again.properties, again.join_keys) == (
        event.event_id, event.event_time, event.properties, event.join_keys,
    )  # fmt: skip
    assert record["consent"] == {"granted": True}


def test_a_parked_envelope_round_trips_through_cloud_logging_entries():
    event = map_order(documented_order(), SITE, NOW)
    envelope, _ = build_envelope(event, PIXEL, {"consent": {"granted": True}}, "opt-in", "US", received_at=int(NOW))
    outcome = park_envelope(envelope, "pubsub unavailable")
    entries = [{"jsonPayload": {"outcome": Kind.PARKED, "replay": outcome.details["replay"]}, "severity": "ERROR"}]
    (record,) = parked_records(json.dumps(entries))  # gcloud logging read --format=json
    assert record["envelope"] == json.loads(envelope.to_json_bytes())


def test_a_huge_order_still_fits_one_log_entry():
    items = [{"product_id": i, "name": f"Product {i} " + "x" * 400, "price": "1", "quantity": 1} for i in range(1, 400)]
    event = map_order(documented_order(line_items=items), SITE, NOW)
    outcome = park_order(event, None, "US", "firestore unavailable")
    assert len(outcome.details["replay"]) <= 50 and all(len(c) <= 2000 for c in outcome.details["replay"])
    (record,) = parked_records(_as_log_lines(outcome))
    assert record["order"]["properties"]["value"] == 29.35
    assert "contents dropped" in outcome.reason


# --- whatever a valid signer sends, mapping never crashes --------------------------


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=30),
    _containers,
    max_leaves=12,
)
_line_item = st.fixed_dictionaries(
    {},
    optional={k: _json | st.integers(0, 10**6) | st.text(max_size=20)
              for k in ("product_id", "variation_id", "sku", "name", "quantity", "price")},
)  # fmt: skip
_address = st.fixed_dictionaries(
    {},
    optional={k: _json | st.text(max_size=40)
              for k in ("first_name", "last_name", "email", "phone", "city", "state", "postcode", "country")},
)  # fmt: skip
_order = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(-5, 10**12) | _json,
        "status": st.sampled_from(["processing", "completed", "pending", "refunded"]) | _json,
        "currency": st.sampled_from(["USD", "eur", "US"]) | _json,
        "total": st.sampled_from(["29.35", "-1", "1e400", ""]) | _json,
        "customer_id": st.integers(-1, 10**6) | _json,
        "order_key": st.text(max_size=40) | _json,
        "date_paid_gmt": st.sampled_from(["2026-01-01T00:00:00", "2026-13-01", "1970-01-01T00:00:00"]) | _json,
        "date_created_gmt": _json,
        "customer_ip_address": st.sampled_from(["203.0.113.1", "::1", "unknown"]) | _json,
        "customer_user_agent": _json,
        "billing": _address | _json,
        "shipping": _address | _json,
        "line_items": st.lists(_line_item | _json, max_size=5) | _json,
        "meta_data": st.lists(
            st.fixed_dictionaries(
                {"key": st.sampled_from(["_ttclid", "_ttp", "_tt_session", "_tt_consent"]), "value": _json}
            ),
            max_size=4,
        )
        | _json,  # fmt: skip
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=_order)
def test_any_signed_json_object_maps_or_is_refused_with_a_reason(order):
    try:
        event = map_order(order, SITE, NOW)
    except UnusableOrder as exc:
        assert "field" in str(exc)
        return
    ignore_reason("order.updated", order)
    checkout_consent(order)
    envelope, outcome = build_envelope(event, PIXEL, {"consent": {"granted": True}}, "opt-in", "US",
                                       received_at=int(NOW))  # fmt: skip
    assert outcome is None
    envelopes_to_request([envelope])  # what the sender will build from it
    assert envelope.event_time > 1_420_070_400
    assert all(v is None or v >= 0 for v in (envelope.properties.value,))


# --- bounded waits on Firestore and Pub/Sub ---------------------------------------


def test_bounded_calls_return_wrap_errors_and_give_up_in_time():
    from shared.infra import deadline

    assert deadline.bounded("firestore", 1.0, lambda: 42) == 42
    with pytest.raises(deadline.DependencyUnavailable, match="firestore unavailable: ValueError: boom"):
        deadline.bounded("firestore", 1.0, lambda: (_ for _ in ()).throw(ValueError("boom")))
    release = threading.Event()
    with pytest.raises(deadline.DependencyUnavailable, match="no answer within 0.05s"):
        deadline.bounded("pubsub", 0.05, release.wait)
    release.set()


def test_too_many_hanging_calls_fail_fast_until_they_return():
    from shared.infra import deadline

    already_hanging = deadline._abandoned  # calls left by outage tests, if they ran first
    release = threading.Event()
    try:
        for _ in range(deadline._MAX_ABANDONED_CALLS):
            with pytest.raises(deadline.DependencyUnavailable):
                deadline.bounded("firestore", 0.01, release.wait)
        with pytest.raises(deadline.DependencyUnavailable, match="earlier calls still hang"):
            deadline.bounded("firestore", 5.0, lambda: 1)
    finally:
        release.set()
    assert wait_until(lambda: deadline._abandoned <= already_hanging, timeout=10)


def test_a_cut_parked_record_is_reported_not_replayed(monkeypatch, capsys):
    from functions.woocommerce_webhook import replay as replay_command

    line = json.dumps({"outcome": Kind.PARKED, "event_id": "woocommerce:s:order:1:Purchase", "replay": ['{"v":1,"ki']})
    (record,) = parked_records(line)
    assert record_event_id(record) == "woocommerce:s:order:1:Purchase"
    monkeypatch.setattr("sys.stdin", io.StringIO(line + "\n"))
    # Hermetic: whether a stack runs or credentials exist is not this test's business (tests/stack/test_first_run.py).
    monkeypatch.setattr(replay_command.localenv, "prepare", lambda *args, **kwargs: None)
    assert replay_command.main([]) == 1
    first, summary = (json.loads(x) for x in capsys.readouterr().out.strip().splitlines())
    assert first["outcome"] == "failed" and first["event_id"] == "woocommerce:s:order:1:Purchase"
    assert summary == {"records": 1, "failed": 1}

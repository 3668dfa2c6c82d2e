"""The documented signed order: what it accepts, the 400s that name the field, its mapping to an OrderEvent."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shared.domain.consent import ConsentSnapshot
from shared.domain.identity import build_user
from shared.sources import CUSTOMER
from shared.sources.signed_orders import SOURCE
from shared.sources.signed_orders.schema import (
    InvalidOrder,
    JoinKeys,
    checkout_consent,
    log_fields,
    read_order,
    to_order_event,
)

SITE = "shop.example.com"
RAW_PII = ("Ada.Lovelace@Example.com", "+44 20 7946 0958", "Ada", "Lovelace", "cust-881", "London", "SW1A 1AA")


def signed_order(**changes: Any) -> dict[str, Any]:
    """The example order of docs/signed-orders.md, paid a minute ago (``changes`` replace top-level fields)."""
    order: dict[str, Any] = {
        "order_id": "A-1001",
        "event": "Purchase",
        "status": "paid",
        "paid_at": int(time.time()) - 60,
        "currency": "EUR",
        "value": 59.9,
        "contents": [{"content_id": "SKU-1", "content_name": "Blue mug", "quantity": 2, "price": 29.95}],
        "customer": {
            "email": RAW_PII[0],
            "phone": RAW_PII[1],
            "first_name": RAW_PII[2],
            "last_name": RAW_PII[3],
            "external_id": RAW_PII[4],
            "city": RAW_PII[5],
            "zip": RAW_PII[6],
            "country": "GB",
        },  # fmt: skip
        "client": {
            "ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0 (Test)",
            "page_url": "https://shop.example.com/thanks",
        },
        "join_keys": {"signed_orders_checkout": "chk_4f9a2c7e1b8d4e6f9a0c"},
        "consent": {"marketing": "granted"},
    }
    order.update(changes)
    return order


def body(order: dict[str, Any]) -> bytes:
    return json.dumps(order).encode()


def problem_fields(order: dict[str, Any] | bytes) -> list[str]:
    with pytest.raises(InvalidOrder) as raised:
        read_order(order if isinstance(order, bytes) else body(order))
    for raw in RAW_PII:  # never quoted back, whatever field failed
        assert raw not in raised.value.reason and raw not in json.dumps(raised.value.fields)
    return [f["field"] for f in raised.value.fields]


def test_the_documented_order_maps_to_one_purchase_event():
    order = read_order(body(signed_order()))
    event = to_order_event(order, SITE)
    assert event.event_id == f"signed_orders:{SITE}:order:A-1001:Purchase"
    assert event.platform == "signed_orders" and event.shop == SITE and event.event == "Purchase"
    contents = [{"content_id": "SKU-1", "content_name": "Blue mug", "quantity": 2, "price": 29.95}]
    assert event.properties == {"currency": "EUR", "value": 59.9, "content_type": "product", "num_items": 2,
                                "order_id": "A-1001", "shop_id": SITE, "contents": contents}  # fmt: skip
    assert event.join_keys == [("signed_orders_checkout", "chk_4f9a2c7e1b8d4e6f9a0c")]
    assert event.page_url == "https://shop.example.com/thanks"
    assert checkout_consent(order) == ConsentSnapshot(granted=True)


def test_the_identity_is_hashed_by_the_order_flow_and_nothing_raw_survives():
    event = to_order_event(read_order(body(signed_order())), SITE)
    user = build_user(event.identity, "US")
    hashed = user.model_dump_json(include={"email", "phone", "external_id", "first_name", "last_name", "zip_code"})
    for raw in RAW_PII:
        assert raw not in hashed and raw.lower() not in hashed
    assert len(user.email[0]) == len(user.phone[0]) == len(user.zip_code or "") == 64
    # As for every source: the city is sent normalized (TikTok hashes it itself), the ip as it is.
    assert user.city == "london" and user.country == "gb" and user.ip == "203.0.113.9"


def test_log_fields_carry_no_shopper_data():
    fields = json.dumps(log_fields(read_order(body(signed_order()))))
    assert fields == json.dumps({"order_id": "A-1001", "event": "Purchase", "status": "paid", "test": False})


def test_the_join_key_fields_are_the_definitions_kinds():
    assert set(JoinKeys.model_fields) == {*(kind.field for kind in SOURCE.join_kinds), CUSTOMER.field}
    order = read_order(body(signed_order(join_keys={"customer_id": 42, "signed_orders_checkout": "chk_x"})))
    # Most specific first: the checkout id, then the customer id (a number is taken as its decimal text).
    assert to_order_event(order, SITE).join_keys == [("signed_orders_checkout", "chk_x"), ("customer_id", "42")]


def test_a_minimal_order_is_an_id_and_a_time():
    order = read_order(b'{"order_id": "7", "occurred_at": "2026-05-04T10:15:00Z"}')
    event = to_order_event(order, SITE)
    assert event.event_time == 1_777_889_700 and event.event == "Purchase" and event.join_keys == []
    assert checkout_consent(order) is None and order.status == "paid" and order.test is False


@pytest.mark.parametrize(
    ("when", "seconds"),
    [(1_777_889_700, 1_777_889_700), (1_777_889_700.9, 1_777_889_700), ("2026-05-04T12:15:00+02:00", 1_777_889_700),
     ("2026-05-04T10:15:00.123z", 1_777_889_700)],
)  # fmt: skip
def test_times_are_unix_seconds_or_iso_8601_with_an_offset(when, seconds):
    assert read_order(body({"order_id": "1", "paid_at": when})).event_time == seconds


def test_paid_at_wins_over_occurred_at():
    order = read_order(body({"order_id": "1", "occurred_at": 1_777_880_000, "paid_at": 1_777_889_700}))
    assert order.event_time == 1_777_889_700


@pytest.mark.parametrize(
    ("when", "words"),
    [(1_777_889_700_000, "milliseconds"), ("2026-05-04T10:15:00", "offset"), ("yesterday", "ISO 8601"),
     (True, "unix seconds"), (12, "2015"), ("", "unix seconds"), ([1], "unix seconds")],
)  # fmt: skip
def test_unusable_times_are_400s_that_say_why(when, words):
    with pytest.raises(InvalidOrder) as raised:
        read_order(body({"order_id": "1", "paid_at": when}))
    assert raised.value.fields[0]["field"] == "paid_at" and words in raised.value.fields[0]["problem"]


def test_an_order_without_any_time_is_refused():
    with pytest.raises(InvalidOrder) as raised:
        read_order(b'{"order_id": "1"}')
    assert "paid_at or occurred_at is required" in raised.value.reason


@pytest.mark.parametrize(
    ("order", "fields"),
    [
        (signed_order(shipping="express"), ["shipping"]),
        (signed_order(customer={"email": RAW_PII[0], "fax": "+1 555 0100"}), ["customer.fax"]),
        (signed_order(contents=[{"content_id": "a", "sku": "b"}]), ["contents.0.sku"]),
        (signed_order(value="59.90"), ["value"]),
        (signed_order(value=-1), ["value"]),
        (signed_order(value=True), ["value"]),
        (signed_order(currency="euro"), ["currency"]),
        (signed_order(currency=None), ["order"]),  # value without currency: the order-level rule
        (signed_order(contents=[{"content_id": "a", "quantity": "2"}]), ["contents.0.quantity"]),
        (signed_order(contents=[{"content_id": "a", "quantity": 0}]), ["contents.0.quantity"]),
        (signed_order(customer={"email": ["a@b.c"]}), ["customer.email"]),
        (signed_order(customer={"country": "United Kingdom"}), ["customer.country"]),
        (signed_order(event="AddToCart"), ["event"]),
        (signed_order(status="shipped"), ["status"]),
        (signed_order(consent={"marketing": "yes"}), ["consent.marketing"]),
        (signed_order(test="false"), ["test"]),
        (signed_order(order_id="A 1001"), ["order_id"]),
        (signed_order(order_id="x" * 65), ["order_id"]),
        (signed_order(order_id="shop:order:1"), ["order_id"]),
        (signed_order(order_id=None), ["order_id"]),
        (signed_order(join_keys={"woocommerce_order_key": "wc_order_x"}), ["join_keys.woocommerce_order_key"]),
        (signed_order(customer="ada"), ["customer"]),
    ],
)
def test_unknown_fields_and_wrong_types_are_400s_naming_the_field(order, fields):
    assert problem_fields(order) == fields


def test_every_failing_field_is_named_at_once():
    assert problem_fields(signed_order(value="x", currency=1, colour="red")) == ["currency", "value", "colour"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [(b"", "not valid JSON"), (b"{", "not valid JSON"), (b"[]", "JSON object"), (b'"x"', "JSON object"),
     (b"\xff\xfe", "UTF-8"), (b'{"order_id": "\\ud800"}', "surrogate"), (b"[" * 100 + b"]" * 100, "nested")],
)  # fmt: skip
def test_bodies_that_are_not_an_object_are_400s_with_a_reason(raw, words):
    with pytest.raises(InvalidOrder) as raised:
        read_order(raw)
    assert words in raised.value.reason


def test_product_names_are_scrubbed_of_contact_details():
    order = read_order(
        body(signed_order(contents=[{"content_id": "gift", "content_name": "Card for ada@example.com"}]))
    )
    (content,) = to_order_event(order, SITE).properties["contents"]
    assert "ada@example.com" not in content["content_name"] and content["quantity"] == 1


def test_page_urls_lose_what_may_identify_the_shopper():
    client = {"page_url": "https://shop.example.com/thanks?email=ada%40example.com&ttclid=E.C.P.x&utm_source=tt"}
    event = to_order_event(read_order(body(signed_order(client=client))), SITE)
    assert event.page_url == "https://shop.example.com/thanks?ttclid=E.C.P.x&utm_source=tt"


def test_a_denied_checkout_is_a_denial():
    assert checkout_consent(read_order(body(signed_order(consent={"marketing": "denied"})))) == ConsentSnapshot(
        granted=False
    )
    assert checkout_consent(read_order(body(signed_order(consent={})))) is None

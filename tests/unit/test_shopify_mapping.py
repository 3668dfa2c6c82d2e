"""Shopify webhooks, the pure part: signatures, topic routing, order mapping, skip rules.

No emulator, no HTTP: everything here is :mod:`shared.receive.shopify` and
:mod:`shared.receive.signatures` on the sample payloads in tests/fixtures/shopify/.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.identity import build_user
from shared.outcome import Outcome
from shared.receive.orders import JOIN_CUSTOMER, JOIN_SHOPIFY_CART, JOIN_SHOPIFY_CHECKOUT
from shared.receive.shopify import routing as planning
from shared.receive.shopify.mapping import click_ids
from shared.receive.shopify.request import MAX_ORDER_AGE, Delivery, normalize_topic
from shared.receive.shopify.routing import (
    TOPICS,
    RecordOrderChange,
    RedactCustomer,
    RedactShop,
    SendEvent,
    parse_payload,
)
from shared.receive.shopify.settings import ShopifyShopConfig
from shared.receive.signatures import verify_hmac_base64
from tests.helpers import load_fixture, shopify_signature

SHOP = "local-shop.myshopify.com"
TRUE_ORDER_ID = 820982911946154508  # from admin_graphql_api_id; the fixture's "id" lost precision
TRUE_CUSTOMER_ID = 115310627314723954
RECEIVED_AT = 1_790_000_000


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def shop_config(**overrides) -> ShopifyShopConfig:
    return ShopifyShopConfig(domain=SHOP, pixel_code="CPIXEL", **overrides)


def documented_order(**changes) -> dict:
    """Shopify's documented orders/create body with its true ids, as a paid, real (non-test) order."""
    order = copy.deepcopy(load_fixture("shopify/orders_create_2026-04_documented.json")["response"])
    order["id"] = int(order["admin_graphql_api_id"].rsplit("/", 1)[1])
    order["customer"]["id"] = int(order["customer"]["admin_graphql_api_id"].rsplit("/", 1)[1])
    order.update(test=False, cancelled_at=None, cancel_reason=None, financial_status="paid")
    order.update(changes)
    return order


def plan(order: dict, topic: str = "orders/paid", shop: ShopifyShopConfig | None = None, **kwargs):
    return planning.plan(topic, order, shop or shop_config(), received_at=RECEIVED_AT, **kwargs)


# --- signatures ------------------------------------------------------------------


def test_signature_is_checked_over_the_raw_bytes_against_every_secret():
    body = b'{"id": 820982911946154508, "note": "caf\xc3\xa9"}'
    signature = shopify_signature(body, "old-secret")
    assert verify_hmac_base64(body, signature, ["new-secret", "old-secret"])
    assert not verify_hmac_base64(body, signature, ["new-secret"])
    # Re-serialized JSON is not the raw body, and must not verify.
    assert not verify_hmac_base64(json.dumps(json.loads(body)).encode(), signature, ["old-secret"])


@pytest.mark.parametrize(
    "signature",
    [None, "", "   ", "not base64!", base64.b64encode(b"short").decode(), "A" * 500],
    ids=["missing", "empty", "blank", "not-base64", "wrong-length", "oversized"],
)
def test_malformed_signatures_never_verify(signature):
    assert not verify_hmac_base64(b'{"id": 1}', signature, ["secret"])


def test_empty_body_truncated_body_and_empty_secret_never_verify():
    body = b'{"id": 1, "email": "a@b.co"}'
    signature = shopify_signature(body, "secret")
    assert verify_hmac_base64(body, signature, ["secret"])
    assert not verify_hmac_base64(body[:-5], signature, ["secret"])
    assert not verify_hmac_base64(b"", shopify_signature(b"", "secret"), ["secret"])
    assert not verify_hmac_base64(body, shopify_signature(body, ""), [""])
    assert not verify_hmac_base64(body, signature, [])


# --- headers and topics ----------------------------------------------------------


def test_delivery_headers_are_read_case_insensitively_and_event_id_wins_for_dedup():
    delivery = Delivery.from_headers(
        {"x-shopify-topic": "ORDERS_PAID", "X-SHOPIFY-SHOP-DOMAIN": SHOP, "X-Shopify-Webhook-Id": "w-1",
         "X-Shopify-Event-Id": "e-1", "X-Shopify-Hmac-Sha256": "sig"}
    )  # fmt: skip
    assert (delivery.topic, delivery.shop_domain, delivery.hmac) == ("orders/paid", SHOP, "sig")
    assert delivery.delivery_id == "e-1"
    assert Delivery.from_headers({"X-Shopify-Webhook-Id": "w-2"}).delivery_id == "w-2"
    assert Delivery.from_headers({}).delivery_id is None


@pytest.mark.parametrize(
    ("topic", "expected"),
    [("customers/data_request", "customers/data_request"), ("CUSTOMERS_DATA_REQUEST", "customers/data_request"),
     ("SHOP_REDACT", "shop/redact"), (" Orders/Paid ", "orders/paid")],
)  # fmt: skip
def test_topic_spellings_are_normalized(topic, expected):
    assert normalize_topic(topic) == expected


def test_unknown_topic_is_ignored_not_rejected():
    outcome = plan(documented_order(), topic="products/update")
    assert isinstance(outcome, Outcome)
    assert outcome.kind == "ignored"
    assert "products/update" in outcome.reason


# --- orders -> Purchase --------------------------------------------------------------


def test_order_ids_beyond_2_53_stay_exact_from_raw_bytes_to_event_id():
    raw = json.dumps(documented_order()).encode()
    assert TRUE_ORDER_ID > 2**53 and str(TRUE_ORDER_ID).encode() in raw
    payload = parse_payload(raw)
    action = plan(payload)
    assert action.order.order_id == "820982911946154508"
    assert action.order.event_id == f"shopify:{SHOP}:order:820982911946154508:Purchase"
    assert action.order.properties["order_id"] == "820982911946154508"
    assert build_user(action.order.identity).external_id == [sha("115310627314723954")]


def test_an_order_id_that_went_through_a_float_is_rejected_not_rounded():
    payload = parse_payload(b'{"id": 8.209829119461545e17, "financial_status": "paid"}')
    outcome = plan(payload)
    assert isinstance(outcome, Outcome)
    assert (outcome.kind, outcome.reason) == ("rejected", "order payload without a numeric id (field 'id')")


def test_documented_order_maps_to_the_purchase_properties_tiktok_expects():
    order = plan(documented_order()).order
    assert order.event == "Purchase"
    assert order.event_time == 1640995200  # processed_at 2021-12-31T19:00:00-05:00
    assert order.properties == {
        "value": 404.95,
        "currency": "USD",
        "content_type": "product",
        # variant_id (the default content_id) is null on every line: the product's id stands in where there is
        # one; the two custom lines (a protection plan, a case) have neither and carry no content_id.
        "contents": [
            {"content_id": "788032119674292900", "content_name": "Aviator sunglasses", "price": 89.99, "quantity": 1},
            {"content_name": "Lens Protection Plan (2 Year)", "price": 19.99, "quantity": 1},
            {"content_name": "Premium Leather Case", "price": 24.99, "quantity": 1},
            {"content_id": "788032119674292900", "content_name": "Mid-century lounger", "price": 159.99, "quantity": 1},
            {"content_id": "788032119674292900", "content_name": "Coffee table", "price": 119.99, "quantity": 1},
        ],
        "num_items": 5,
        "order_id": str(TRUE_ORDER_ID),
        "shop_id": SHOP,
    }


@pytest.mark.parametrize(
    ("setting", "expected_ids", "content_type"),
    [("variant_id", ["39072856", "49148385", "457924702"], "product"),
     ("product_id", ["632910392", "632910392", "632910392"], "product_group"),
     ("sku", ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"], "product")],
)  # fmt: skip
def test_content_id_follows_the_shop_setting(setting, expected_ids, content_type):
    order = load_fixture("shopify/order_rest_envelope_legacy.json")["order"]
    for item, vendor in zip(order["line_items"], ("Apple", None, "Apple"), strict=True):
        item["vendor"] = vendor
    props = plan(order, shop=shop_config(content_id=setting)).order.properties
    assert [c["content_id"] for c in props["contents"]] == expected_ids
    assert props["content_type"] == content_type
    assert [c.get("brand") for c in props["contents"]] == ["Apple", None, "Apple"]
    assert [c["price"] for c in props["contents"]] == [199.0, 199.0, 199.0]


def _with_presentment(order: dict) -> dict:
    """The documented order paid in EUR by the shopper, in a USD shop."""
    order["presentment_currency"] = "EUR"
    order["total_price_set"]["presentment_money"] = {"amount": "371.20", "currency_code": "EUR"}
    for item in order["line_items"]:
        item["price_set"]["presentment_money"] = {"amount": "10.50", "currency_code": "EUR"}
    return order


def test_presentment_currency_by_default_and_shop_currency_when_set():
    presentment = plan(_with_presentment(documented_order())).order.properties
    assert (presentment["value"], presentment["currency"]) == (371.20, "EUR")
    assert {c["price"] for c in presentment["contents"]} == {10.50}
    shop_money = plan(_with_presentment(documented_order()), shop=shop_config(currency="shop")).order.properties
    assert (shop_money["value"], shop_money["currency"]) == (404.95, "USD")
    assert [c["price"] for c in shop_money["contents"]][:2] == [89.99, 19.99]


def test_without_money_sets_the_plain_total_is_paired_with_the_shop_currency():
    order = documented_order(presentment_currency="EUR")
    del order["total_price_set"]
    props = plan(order).order.properties
    assert (props["value"], props["currency"]) == (404.95, "USD")


def test_identity_comes_from_order_customer_billing_and_shipping():
    order = documented_order(
        email=" Jon@Example.com ",
        phone="020 7946 0958",
        browser_ip=None,
        client_details={"browser_ip": "203.0.113.24", "user_agent": "Mozilla/5.0 (test)"},
        customer_locale="en-GB",
    )
    order["billing_address"].update(country_code="GB", phone="020 7946 0958", zip="sw1a 1aa", city="London",
                                    province_code="ENG", first_name="Stephen")  # fmt: skip
    order["shipping_address"].update(country_code="DE", phone="030 1234567")
    order["customer"].update(phone="+86 138 0013 8000")
    user = build_user(plan(order).order.identity, "US")
    assert user.email == [sha("jon@example.com"), sha("john@example.com")]
    # Local numbers parsed with their own address's country; China's without the country code.
    assert user.phone == [sha("+442079460958"), sha("13800138000"), sha("+49301234567")]
    assert user.external_id == [sha(str(TRUE_CUSTOMER_ID))]
    # The billing address's person, names and location alike; not the customer account's names (John Smith).
    assert (user.first_name, user.last_name) == (sha("stephen"), sha("shipper"))
    assert (user.zip_code, user.city, user.state, user.country) == (sha("sw1a1aa"), "london", "eng", "gb")
    assert (user.ip, user.user_agent, user.locale) == ("203.0.113.24", "Mozilla/5.0 (test)", "en-GB")


def test_names_and_location_come_from_one_address_billing_then_shipping():
    order = documented_order()
    order["billing_address"].update(first_name="Bea", last_name="Payer", zip="10115", city="Berlin",
                                    province_code="BE", country_code="DE")  # fmt: skip
    order["shipping_address"].update(first_name="Sam", last_name="Getter", zip="75001", city="Paris",
                                     province_code=None, country_code="FR")  # fmt: skip
    user = build_user(plan(order).order.identity, "US")
    assert (user.first_name, user.last_name, user.zip_code, user.city, user.state, user.country) == (
        sha("bea"), sha("payer"), sha("10115"), "berlin", "be", "de")  # fmt: skip

    del order["billing_address"]  # no billing address: the shipping address's person, whole
    user = build_user(plan(order).order.identity, "US")
    assert (user.first_name, user.last_name, user.zip_code, user.city, user.country) == (
        sha("sam"), sha("getter"), sha("75001"), "paris", "fr")  # fmt: skip

    order["shipping_address"].update(first_name=None, last_name=None)  # an address without a name: the customer's
    user = build_user(plan(order).order.identity, "US")
    assert (user.first_name, user.last_name, user.city) == (sha("john"), sha("smith"), "paris")


def test_content_id_falls_back_from_a_null_variant_to_its_product_only():
    order = documented_order()
    first, custom = order["line_items"][0], order["line_items"][1]
    assert first["variant_id"] is None and custom["variant_id"] is None and custom["product_id"] is None
    first["variant_id"] = 4242
    ids = [c.get("content_id") for c in plan(order).order.properties["contents"]]
    assert ids[:2] == ["4242", None]  # a variant wins; a line with neither has no content_id, never another's
    assert ids[3] == "788032119674292900"
    skus = [c.get("content_id") for c in plan(order, shop=shop_config(content_id="sku")).order.properties["contents"]]
    assert skus[:2] == ["SKU2006-001", "LENS-PROTECT-2YR"]


def test_unicode_names_are_hashed_in_their_own_script():
    order = documented_order()
    order["billing_address"].update(first_name=" José María ", last_name="Müller-Lüdenscheidt")
    user = build_user(plan(order).order.identity)
    assert user.first_name == sha("josémaría")
    assert user.last_name == sha("müllerlüdenscheidt")
    order["billing_address"].update(first_name="山田", last_name="太郎")
    user = build_user(plan(order).order.identity)
    assert (user.first_name, user.last_name) == (sha("山田"), sha("太郎"))


def test_an_order_without_customer_or_addresses_still_maps():
    order = documented_order(customer=None, billing_address=None, shipping_address=None, contact_email=None)
    action = plan(order)
    user = build_user(action.order.identity, "US")
    assert user.email == [sha("jon@example.com")]
    assert (user.external_id, user.phone, user.first_name, user.country) == ([], [], None, None)
    assert action.order.join_keys == []


def test_placeholder_values_are_dropped_not_sent():
    order = load_fixture("shopify/orders_2024-04_anonymized_production.json")
    action = plan(order)
    user = build_user(action.order.identity, "US")
    assert user.email == [sha("eallam@example.com")]
    assert user.phone == []  # "example string" is no phone number
    assert (user.zip_code, user.state, user.country, user.locale) == (None, None, None, None)
    assert user.ip is None  # 192.168.0.1: a private address is no shopper's
    assert (action.order.page_url, action.order.referrer) == (None, None)
    assert (user.ttclid, user.ttp) == (None, None)
    props = action.order.properties
    assert "value" not in props and "currency" not in props  # "example string" is no amount
    assert props["order_id"] == "123"


def test_zero_ip_of_old_orders_is_not_an_address():
    order = load_fixture("shopify/order_rest_envelope_legacy.json")["order"]
    assert order["client_details"]["browser_ip"] == "0.0.0.0"
    assert build_user(plan(order).order.identity).ip is None


# --- click ids, pages and join keys ------------------------------------------------------


def test_click_ids_come_from_note_attributes_before_the_landing_page():
    order = documented_order(
        note_attributes=[{"name": "_ttclid", "value": "E.C.P.from-note"}, {"name": "_ttp", "value": "ttp-note"}],
        landing_site="/products/x?ttclid=E.C.P.from-landing",
    )
    assert click_ids(order) == ("E.C.P.from-note", "ttp-note")
    order["note_attributes"] = [{"name": "ttclid", "value": "E.C.P.plain-name"}, {"name": "ttp", "value": "t2"}]
    assert click_ids(order) == ("E.C.P.plain-name", "t2")
    order["note_attributes"] = [{"name": "gift", "value": "yes"}]
    assert click_ids(order) == ("E.C.P.from-landing", None)
    order["landing_site"] = "/products/x?utm_source=tiktok"
    assert click_ids(order) == (None, None)


def test_page_url_prefixes_the_relative_landing_site_with_the_shop_domain():
    order = plan(documented_order(landing_site="/products/x?ttclid=abc", referring_site="https://www.tiktok.com/"))
    assert order.order.page_url == f"https://{SHOP}/products/x?ttclid=abc"
    assert order.order.referrer == "https://www.tiktok.com/"
    # Query parameters outside ttclid and utm_* are dropped: any of them may identify the shopper.
    absolute = plan(documented_order(landing_site="http://www.example.com?source=abc")).order
    assert absolute.page_url == "http://www.example.com"


def test_join_keys_go_from_checkout_to_cart_to_customer():
    order = plan(documented_order(checkout_token="chk-1", cart_token="cart-1")).order
    assert order.join_keys == [
        (JOIN_SHOPIFY_CHECKOUT, "chk-1"),
        (JOIN_SHOPIFY_CART, "cart-1"),
        (JOIN_CUSTOMER, str(TRUE_CUSTOMER_ID)),
    ]


# --- which orders become a Purchase ---------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "rule", "setting"),
    [({"test": True}, "test_order", "include_test_orders"),
     ({"source_name": "pos"}, "pos_order", "include_pos_orders"),
     ({"source_name": "shopify_draft_order"}, "draft_order", "include_draft_orders")],
)  # fmt: skip
def test_test_pos_and_draft_orders_are_skipped_unless_the_shop_includes_them(changes, rule, setting):
    skipped = plan(documented_order(**changes))
    assert isinstance(skipped, Outcome)
    assert (skipped.kind, skipped.details["rule"]) == ("skipped", rule)
    assert skipped.event_id == f"shopify:{SHOP}:order:{TRUE_ORDER_ID}:Purchase"
    included = plan(documented_order(**changes), shop=shop_config(**{setting: True}))
    assert isinstance(included, SendEvent)


def test_orders_create_waits_for_payment_unless_the_shop_counts_creation():
    unpaid = documented_order(financial_status="pending")
    waiting = plan(unpaid, topic="orders/create")
    assert isinstance(waiting, Outcome) and waiting.kind == "ignored"
    counted = plan(unpaid, topic="orders/create", shop=shop_config(purchase_topic="orders/create"))
    assert isinstance(counted, SendEvent)
    # An order created already paid is the same Purchase, with the same id, as its orders/paid.
    created_paid = plan(documented_order(), topic="orders/create")
    paid = plan(documented_order(), topic="orders/paid")
    assert created_paid.order.event_id == paid.order.event_id
    assert created_paid.order.properties == paid.order.properties


def test_a_cancelled_order_is_never_a_purchase():
    outcome = plan(documented_order(cancelled_at="2021-12-31T19:00:00-05:00"))
    assert isinstance(outcome, Outcome)
    assert (outcome.kind, outcome.details["rule"]) == ("skipped", "cancelled")


def test_cancellations_and_refunds_are_records_never_events():
    cancelled = plan(documented_order(cancel_reason="customer", cancelled_at="2022-01-01T10:00:00-05:00"),
                     topic="orders/cancelled")  # fmt: skip
    assert cancelled == RecordOrderChange(
        str(TRUE_ORDER_ID), "cancelled", {"kind": "cancelled", "cancel_reason": "customer"}, blocks_purchase=True
    )
    refund = {
        "id": 929361462, "order_id": TRUE_ORDER_ID,
        "transactions": [
            {"kind": "refund", "status": "success", "amount": "10.00", "currency": "USD"},
            {"kind": "refund", "status": "failure", "amount": "99.00", "currency": "USD"},
            {"kind": "refund", "status": "success", "amount": "5.50", "currency": "USD"},
        ],
    }  # fmt: skip
    assert plan(refund, topic="refunds/create") == RecordOrderChange(
        str(TRUE_ORDER_ID), "refund-929361462",
        {"kind": "refund", "refund_id": "929361462", "amount": "15.50", "currency": "USD"},
    )  # fmt: skip


def test_event_time_falls_back_to_receipt_when_the_order_time_is_unusable():
    assert plan(documented_order(processed_at="yesterday", created_at=None)).order.event_time == RECEIVED_AT
    assert plan(documented_order(processed_at="2008-01-10T11:00:00-05:00")).order.event_time == 1640995200
    later = plan(documented_order(processed_at=None, created_at=None), triggered_at="2026-09-01T00:00:00Z")
    assert later.order.event_time == 1788220800


# --- checkouts and customers -------------------------------------------------------------


def test_checkout_create_is_initiate_checkout_keyed_by_its_token():
    checkout = documented_order(
        token="tok-9", cart_token="cart-9", checkout_token=None, created_at="2026-01-01T00:00:00Z",
        admin_graphql_api_id=None,  # a checkout is no Order: an order body is refused as checkouts/create
    )  # fmt: skip
    action = plan(checkout, topic="checkouts/create")
    assert action.order.event == "InitiateCheckout"
    assert action.order.event_id == f"shopify:{SHOP}:order:checkout-tok-9:InitiateCheckout"
    assert action.order.event_time == 1767225600
    assert action.order.join_keys[:2] == [(JOIN_SHOPIFY_CHECKOUT, "tok-9"), (JOIN_SHOPIFY_CART, "cart-9")]
    assert "order_id" not in action.order.properties
    assert action.order.properties["value"] == 404.95


def test_customer_create_is_complete_registration():
    customer = {
        "id": TRUE_CUSTOMER_ID, "email": "New.Shopper@Example.com", "phone": "+16135551234",
        "first_name": "Ana", "last_name": "Lima", "created_at": "2026-01-01T00:00:00Z",
        "default_address": {"country_code": "CA", "zip": "K2H 7A8", "city": "Ottawa", "province_code": "ON"},
    }  # fmt: skip
    order = plan(customer, topic="customers/create").order
    assert order.event == "CompleteRegistration"
    assert order.event_id == f"shopify:{SHOP}:order:customer-{TRUE_CUSTOMER_ID}:CompleteRegistration"
    assert order.join_keys == [(JOIN_CUSTOMER, str(TRUE_CUSTOMER_ID))]
    user = build_user(order.identity)
    assert user.email == [sha("new.shopper@example.com")]
    assert user.external_id == [sha(str(TRUE_CUSTOMER_ID))]
    assert (user.first_name, user.zip_code, user.country) == (sha("ana"), sha("k2h7a8"), "ca")


# --- privacy ---------------------------------------------------------------------------


def test_privacy_topics_plan_deletions_and_an_acknowledgement():
    redact = {"shop_domain": SHOP, "customer": {"id": 191167, "email": "x@y.co"}, "orders_to_redact": [1, "2", 3.0]}
    assert plan(redact, topic="customers/redact") == RedactCustomer("191167", ["1", "2"])
    assert plan({"shop_domain": SHOP}, topic="shop/redact") == RedactShop()
    request = {"shop_domain": SHOP, "customer": {"id": 1}, "orders_requested": [1, 2], "data_request": {"id": 9999}}
    ack = plan(request, topic="customers/data_request")
    assert (ack.kind, ack.details) == ("recorded", {"data_request_id": "9999", "orders_requested": 2})
    assert plan({"customer": {}}, topic="customers/redact").kind == "rejected"


# --- malformed content from a valid signer --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"not json", "body is not valid JSON"), (b"\xff\xfe", "body is not valid JSON"),
     (b"[1, 2]", "body is JSON list, expected an object"), (b'"text"', "body is JSON str, expected an object"),
     (b"[" * 100_000, "body is not valid JSON")],
)  # fmt: skip
def test_unparseable_bodies_become_rejections_with_a_reason(body, reason):
    outcome = parse_payload(body)
    assert isinstance(outcome, Outcome)
    assert (outcome.kind, outcome.reason) == ("rejected", reason)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_ORDER_KEYS = ["id", "customer", "billing_address", "shipping_address", "line_items", "total_price_set",
               "note_attributes", "landing_site", "client_details", "processed_at", "test", "source_name",
               "financial_status", "transactions", "order_id", "token", "orders_to_redact", "cancelled_at",
               "updated_at", "created_at", "shop_domain", "admin_graphql_api_id"]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from(sorted(TOPICS)),
    payload=st.dictionaries(st.sampled_from(_ORDER_KEYS), _json, max_size=len(_ORDER_KEYS)),
    base=st.booleans(),
)
def test_any_json_object_on_any_topic_plans_without_raising(topic, payload, base):
    document = {**documented_order(), **payload} if base else payload
    action = planning.plan(topic, document, shop_config(), received_at=RECEIVED_AT)
    assert isinstance(action, (Outcome, SendEvent, RecordOrderChange, RedactCustomer,
                               RedactShop))  # fmt: skip
    if isinstance(action, SendEvent):
        build_user(action.order.identity, "US")  # hashing never raises on what the mapping kept
    # The webhook's own call, with the replay checks (topic shape, age), never raises either.
    aged = planning.plan(topic, document, shop_config(), received_at=RECEIVED_AT, max_age=MAX_ORDER_AGE)
    assert isinstance(aged, type(action)) or (isinstance(aged, Outcome) and aged.kind == "rejected")


def test_an_unexpected_mapping_error_is_a_rejection_naming_its_type_not_a_crash(monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("jon@example.com is not what we expected")

    monkeypatch.setattr(planning, "properties", broken)
    outcome = plan(documented_order())
    assert (outcome.kind, outcome.reason) == ("rejected", "orders/paid payload could not be mapped: TypeError")
    assert "jon@example.com" not in repr(outcome)

"""Shopify signs the body only: the pure checks that a signed body is one of its topic, and recent.

No emulator, no HTTP: :func:`shared.receive.shopify.routing.plan` with ``max_age``, as the
webhook calls it, on the documented order and the bodies of the other topics.
"""

from __future__ import annotations

import datetime as dt

import pytest

from shared.config import ConfigError
from shared.outcome import Outcome
from shared.receive.orders import ORDER_EVENT_TTL
from shared.receive.shopify import routing as planning
from shared.receive.shopify.request import MAX_BODY_BYTES, MAX_ORDER_AGE
from shared.receive.shopify.routing import RecordOrderChange, RedactCustomer, RedactShop, SendEvent, parse_payload
from shared.receive.shopify.runtime import Runtime
from shared.receive.shopify.settings import ShopifySettings
from tests.unit.test_shopify_mapping import SHOP, TRUE_ORDER_ID, documented_order, shop_config

NOW = 1_790_000_000
DAY = 86_400
WEEK = dt.timedelta(days=7)


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat()


def fresh(body: dict, seconds_ago: int = 60) -> dict:
    return {**body, "created_at": iso(NOW - seconds_ago), "updated_at": iso(NOW - seconds_ago)}


def paid_order(**changes) -> dict:
    return {**fresh(documented_order(processed_at=iso(NOW - 60))), **changes}


def plan(body: dict, topic: str = "orders/paid"):
    return planning.plan(topic, body, shop_config(), received_at=NOW, max_age=WEEK)


def rejected(action) -> str:
    assert isinstance(action, Outcome) and action.kind == "rejected", action
    return action.reason


REFUND = fresh({"id": 929361462, "admin_graphql_api_id": "gid://shopify/Refund/929361462", "order_id": TRUE_ORDER_ID,
                "processed_at": iso(NOW - 60), "transactions": []})  # fmt: skip
CUSTOMER = fresh({"id": 115310627314723954, "admin_graphql_api_id": "gid://shopify/Customer/115310627314723954",
                  "email": "new.shopper@example.com"})  # fmt: skip
CHECKOUT = fresh({"id": 981820079255243537, "token": "tok-1", "cart_token": "cart-1", "line_items": []})
CUSTOMER_REDACT = {"shop_id": 954889, "shop_domain": SHOP, "customer": {"id": 191167}, "orders_to_redact": [1, 2]}
DATA_REQUEST = {"shop_id": 954889, "shop_domain": SHOP, "customer": {"id": 191167}, "data_request": {"id": 9999}}
SHOP_REDACT = {"shop_id": 954889, "shop_domain": SHOP}


# --- each topic's own body is accepted ----------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "body", "action"),
    [("orders/paid", paid_order(), SendEvent), ("orders/create", paid_order(), SendEvent),
     ("orders/cancelled", paid_order(cancelled_at=iso(NOW - 60)), RecordOrderChange),
     ("refunds/create", REFUND, RecordOrderChange), ("customers/create", CUSTOMER, SendEvent),
     ("checkouts/create", CHECKOUT, SendEvent), ("customers/redact", CUSTOMER_REDACT, RedactCustomer),
     ("shop/redact", SHOP_REDACT, RedactShop)],
)  # fmt: skip
def test_each_topic_accepts_its_own_body(topic, body, action):
    assert isinstance(plan(body, topic), action)


def test_a_data_request_naming_the_shop_is_acknowledged():
    assert plan(DATA_REQUEST, "customers/data_request").kind == "recorded"


# --- a body under another topic is refused ------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "reason"),
    [("orders/cancelled", "orders/cancelled body without cancelled_at: the order it holds is not cancelled"),
     ("customers/redact", "customers/redact body does not name this shop in shop_domain"),
     ("shop/redact", "shop/redact body does not name this shop in shop_domain"),
     ("customers/data_request", "customers/data_request body does not name this shop in shop_domain"),
     ("customers/create", "a Order body is not a customers/create body"),
     ("checkouts/create", "a Order body is not a checkouts/create body")],
)  # fmt: skip
def test_a_paid_order_replayed_under_another_topic_is_refused(topic, reason):
    assert rejected(plan(paid_order(), topic)) == reason


@pytest.mark.parametrize(
    ("body", "topic"),
    [(REFUND, "orders/paid"), (REFUND, "orders/cancelled"), (CUSTOMER, "orders/paid"), (CHECKOUT, "orders/paid"),
     ({**REFUND, "admin_graphql_api_id": "gid://shopify/Order/1"}, "refunds/create"),
     (CUSTOMER_REDACT, "shop/redact"), (SHOP_REDACT, "customers/redact"), (DATA_REQUEST, "customers/redact"),
     ({**CUSTOMER_REDACT, "shop_domain": "other-shop.myshopify.com"}, "customers/redact"),
     ({**SHOP_REDACT, "shop_domain": "other-shop.myshopify.com"}, "shop/redact"),
     ({"shop_domain": SHOP, "orders_to_redact": [1]}, "customers/redact")],
)  # fmt: skip
def test_bodies_of_other_topics_and_other_shops_are_refused(body, topic):
    rejected(plan(body, topic))


def test_the_shop_domain_is_compared_as_a_shop_key():
    assert isinstance(plan({**SHOP_REDACT, "shop_domain": " Local-Shop.MyShopify.com"}, "shop/redact"), RedactShop)


# --- age -------------------------------------------------------------------------------------------


def test_an_order_older_than_the_max_age_is_refused_and_says_its_age():
    old = paid_order(created_at=iso(NOW - 8 * DAY), updated_at=iso(NOW - 8 * DAY), processed_at=iso(NOW - 8 * DAY))
    outcome = plan(old)
    assert rejected(outcome) == "body is older than 7 days (SHOPIFY_MAX_ORDER_AGE_DAYS): refused as a replay"
    assert outcome.details == {"age_seconds": 8 * DAY, "max_age_seconds": 7 * DAY}
    assert isinstance(plan(paid_order(updated_at=iso(NOW - 6 * DAY))), SendEvent)


def test_the_newest_signed_time_counts_so_a_late_payment_is_fresh():
    late = paid_order(created_at=iso(NOW - 30 * DAY), processed_at=iso(NOW - 30 * DAY), updated_at=iso(NOW - 60))
    assert isinstance(plan(late), SendEvent)


def test_the_unsigned_triggered_at_header_cannot_make_an_old_body_fresh():
    old = paid_order(created_at=iso(NOW - 9 * DAY), updated_at=iso(NOW - 9 * DAY), processed_at=iso(NOW - 9 * DAY))
    action = planning.plan("orders/paid", old, shop_config(), received_at=NOW, triggered_at=iso(NOW), max_age=WEEK)
    rejected(action)


@pytest.mark.parametrize("topic", ["orders/paid", "orders/cancelled", "refunds/create", "customers/create",
                                   "checkouts/create"])  # fmt: skip
def test_bodies_without_any_signed_time_are_refused_on_every_order_topic(topic):
    body = {"orders/paid": paid_order(), "orders/cancelled": paid_order(cancelled_at=iso(NOW)),
            "refunds/create": REFUND, "customers/create": CUSTOMER, "checkouts/create": CHECKOUT}[topic]  # fmt: skip
    undated = {k: v for k, v in body.items() if k not in ("created_at", "updated_at", "processed_at")}
    assert "no signed timestamp" in rejected(plan(undated, topic))


def test_privacy_bodies_carry_no_time_and_are_not_aged():
    assert isinstance(plan(SHOP_REDACT, "shop/redact"), RedactShop)


# --- the setting, tied to the order records' lifetime --------------------------------------------------


def test_the_max_age_can_never_reach_the_lifetime_of_the_order_records():
    """A replay arriving after our order records expired must be refused, never published a second time."""
    cap = next(m.le for m in ShopifySettings.model_fields["max_order_age_days"].metadata if hasattr(m, "le"))
    assert dt.timedelta(days=cap) < ORDER_EVENT_TTL
    assert MAX_ORDER_AGE < ORDER_EVENT_TTL
    base = {"TIKTOK_PIXEL_CODE": "CPIXEL", "SHOPIFY_SHOP_DOMAIN": SHOP, "SHOPIFY_WEBHOOK_SECRET": "s"}
    with pytest.raises(ConfigError, match="SHOPIFY_MAX_ORDER_AGE_DAYS"):
        ShopifySettings.from_env({**base, "SHOPIFY_MAX_ORDER_AGE_DAYS": str(ORDER_EVENT_TTL.days)})
    runtime = Runtime.from_env(base)
    assert runtime.max_order_age == MAX_ORDER_AGE == dt.timedelta(days=7)
    assert runtime.max_body_bytes == MAX_BODY_BYTES
    assert Runtime.from_env({**base, "SHOPIFY_MAX_ORDER_AGE_DAYS": "2"}).max_order_age == dt.timedelta(days=2)


# --- parsing signed bodies --------------------------------------------------------------------------------


def test_a_lone_surrogate_is_replaced_so_the_order_still_maps():
    payload = parse_payload(b'{"id": 1, "landing_site": "/p?x=\\ud800", "client_details": {"user_agent": "a\\udc00"}}')
    assert payload["landing_site"] == "/p?x=\ufffd" and payload["client_details"]["user_agent"] == "a\ufffd"


@pytest.mark.parametrize(
    "body",
    [b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", b'{"id": ' + b"1" * 5000 + b"}", b'{"value": 1e999}',
     b'{"value": -Infinity}'],
)  # fmt: skip
def test_structurally_hostile_bodies_are_unparseable_rejections(body):
    outcome = parse_payload(body)
    assert (outcome.kind, outcome.reason) == ("rejected", "body is not valid JSON")
    assert outcome.details["detail"] and "1111" not in outcome.details["detail"]

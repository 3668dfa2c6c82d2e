"""Reconciliation's pure parts: the shops' API clients over httpx.MockTransport, classification, the table."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest

from shared import report
from shared.config import ConfigError
from shared.domain.events import order_event_id
from shared.receive.shopify.routing import SendEvent, plan
from shared.receive.shopify.settings import ShopifyShopConfig
from shared.reconcile import (
    CANCELLED,
    PAID,
    REFUNDED,
    TEST,
    UNPAID,
    AccessRefused,
    ApiError,
    ShopOrder,
    Webhook,
    compare,
    job,
    shopify,
    woocommerce,
)
from shared.reconcile.settings import ReconcileSettings, per_shop, tenants_of

SHOP = "reconcile-shop.myshopify.com"
SINCE = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
UNTIL = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def node(n: int, created: str = "2026-12-02T10:00:00Z", **fields: Any) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Order/{n}",
        "legacyResourceId": str(n),
        "name": f"#{1000 + n}",
        "createdAt": created,
        "updatedAt": created,
        "processedAt": created,
        "cancelledAt": None,
        "test": False,
        "displayFinancialStatus": "PAID",
        **fields,
    }


def graphql_page(nodes: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
    return {
        "data": {"orders": {"nodes": nodes, "pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor}}},
        "extensions": {
            "cost": {
                "requestedQueryCost": 102,
                "actualQueryCost": 12,
                "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1988.0, "restoreRate": 100.0},
            }
        },
    }


def shopify_client(handler: Any, sleeps: Sleeps | None = None, **options: Any) -> shopify.ShopifyOrders:
    credentials = options.pop("credentials", shopify.Credentials(token="shpat_test"))
    return shopify.ShopifyOrders(
        SHOP,
        credentials,
        api_version="2026-10",
        transport=httpx.MockTransport(handler),
        sleep=Sleeps() if sleeps is None else sleeps,
        **options,
    )


# --- Shopify -----------------------------------------------------------------------------------


def test_shopify_pages_through_the_cursor_and_keeps_the_orders_created_in_the_window():
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/admin/api/2026-10/graphql.json"
        assert request.headers["X-Shopify-Access-Token"] == "shpat_test"
        body = json.loads(request.content)
        seen.append(body["variables"])
        if body["variables"]["after"] is None:
            return httpx.Response(200, json=graphql_page([node(1), node(2, "2026-11-20T00:00:00Z")], "c1"))
        return httpx.Response(200, json=graphql_page([node(2), node(3), node(4, "2026-12-05T00:00:00Z")], None))

    client = shopify_client(handler)
    orders = list(client.list(SINCE, UNTIL))
    assert [o.order_id for o in orders] == ["1", "3"]  # 2: created before (and listed twice), 4: after
    assert seen[0] == {"first": 100, "after": None, "query": "updated_at:>='2026-12-01T00:00:00Z'"}
    assert seen[1]["after"] == "c1" and client.calls == 2


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({}, PAID),
        ({"displayFinancialStatus": "PARTIALLY_REFUNDED"}, PAID),
        ({"displayFinancialStatus": "PENDING"}, UNPAID),
        ({"displayFinancialStatus": "AUTHORIZED"}, UNPAID),
        ({"displayFinancialStatus": "REFUNDED"}, REFUNDED),
        ({"cancelledAt": "2026-12-02T11:00:00Z"}, CANCELLED),
        ({"test": True, "cancelledAt": "2026-12-02T11:00:00Z"}, TEST),  # the webhook's order of rules: test first
    ],
)
def test_shopify_orders_are_classified_as_the_webhook_sees_them(fields, kind):
    assert shopify.classify(node(1, **fields)) == kind


def test_a_throttled_query_waits_what_the_bucket_needs_then_asks_again():
    answers = [
        {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": 752,
                    "actualQueryCost": None,
                    "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 52.0, "restoreRate": 50.0},
                }
            },
        },
        graphql_page([node(1)], None),
    ]
    sleeps = Sleeps()
    client = shopify_client(lambda request: httpx.Response(200, json=answers.pop(0)), sleeps)
    assert [o.order_id for o in client.list(SINCE, UNTIL)] == ["1"]
    assert sleeps == [14.0]  # (752 - 52) / 50


def test_throttling_is_waited_out_a_bounded_number_of_times():
    throttled = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {
            "cost": {"requestedQueryCost": 10, "throttleStatus": {"currentlyAvailable": 0, "restoreRate": 100.0}}
        },
    }
    sleeps = Sleeps()
    client = shopify_client(lambda request: httpx.Response(200, json=throttled), sleeps)
    with pytest.raises(ApiError, match="still THROTTLED"):
        list(client.list(SINCE, UNTIL))
    assert len(sleeps) == shopify.MAX_THROTTLED and client.calls == shopify.MAX_THROTTLED + 1


def test_a_refused_admin_token_is_one_line_naming_the_secret():
    client = shopify_client(lambda r: httpx.Response(401, json={"errors": "[API] Invalid API key or access token"}))
    with pytest.raises(AccessRefused) as refused:
        list(client.list(SINCE, UNTIL))
    assert str(refused.value) == (
        f"SHOPIFY_ADMIN_TOKEN for Shopify shop {SHOP} was refused (401): [API] Invalid API key or access token"
    )
    assert client.calls == 1  # never retried


def test_client_credentials_are_exchanged_for_a_token_once():
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/admin/oauth/access_token":
            form = dict(httpx.QueryParams(request.content.decode()))
            assert form == {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}
            return httpx.Response(
                200, json={"access_token": "shpat_granted", "scope": "read_orders", "expires_in": 86399}
            )
        assert request.headers["X-Shopify-Access-Token"] == "shpat_granted"
        return httpx.Response(200, json=graphql_page([node(1)], None))

    client = shopify_client(handler, credentials=shopify.Credentials(client_id="cid", client_secret="csecret"))
    list(client.list(SINCE, UNTIL))
    list(client.list(SINCE, UNTIL))
    assert calls.count("/admin/oauth/access_token") == 1 and client.calls == 3


def test_refused_client_credentials_name_both_settings():
    client = shopify_client(
        lambda r: httpx.Response(400 if False else 401, json={"error": "invalid_client"}),
        credentials=shopify.Credentials(client_id="cid", client_secret="bad"),
    )
    with pytest.raises(AccessRefused, match=r"^SHOPIFY_CLIENT_ID/SHOPIFY_CLIENT_SECRET for Shopify shop .* \(401\)"):
        list(client.list(SINCE, UNTIL))


def full_node(**fields: Any) -> dict[str, Any]:
    money = {
        "shopMoney": {"amount": "25.00", "currencyCode": "EUR"},
        "presentmentMoney": {"amount": "27.00", "currencyCode": "USD"},
    }
    address = {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "zip": "10115",
        "city": "Berlin",
        "provinceCode": "BE",
        "countryCodeV2": "DE",
        "phone": None,
    }
    defaults: dict[str, Any] = dict(
        sourceName="web",
        email="ada@example.com",
        phone=None,
        customerLocale="de",
        clientIp="203.0.113.9",
        cartToken="cart-token-abcdefghijklmnop",
        checkoutToken="checkout-token-abcdefghijk",
        currencyCode="EUR",
        presentmentCurrencyCode="USD",
        totalPriceSet=money,
        customAttributes=[{"key": "_ttclid", "value": "E.C.P.reconcile-click"}],
        customerJourneySummary={"firstVisit": {"landingPage": "https://shop.example/?ttclid=x", "referrerUrl": None}},
        billingAddress=address,
        shippingAddress=address,
        customer={"legacyResourceId": "115310627314723954", "firstName": "Ada", "lastName": "Lovelace"},
        lineItems={
            "nodes": [
                {
                    "title": "Mug",
                    "quantity": 2,
                    "sku": "MUG-1",
                    "vendor": "Acme",
                    "variant": {"legacyResourceId": "808950810"},
                    "product": {"legacyResourceId": "632910392"},
                    "originalUnitPriceSet": money,
                }
            ]
        },
    )
    return node(820982911946154508, **{**defaults, **fields})


def test_a_graphql_order_becomes_the_webhook_body_the_mapping_reads():
    shop = ShopifyShopConfig(domain=SHOP, pixel_code="CPIX")
    action = plan("orders/paid", shopify.webhook_body(full_node()), shop, received_at=1_800_000_000)
    assert isinstance(action, SendEvent)
    order = action.order
    assert order.event_id == order_event_id("shopify", SHOP, "820982911946154508", "Purchase")
    assert order.join_keys == [
        ("shopify_checkout_token", "checkout-token-abcdefghijk"),
        ("shopify_cart_token", "cart-token-abcdefghijklmnop"),
        ("customer_id", "115310627314723954"),
    ]
    assert order.properties["value"] == 27.0 and order.properties["currency"] == "USD"  # presentment, as the webhook
    assert order.properties["contents"][0]["content_id"] == "808950810"
    assert order.identity.ttclid == "E.C.P.reconcile-click" and order.identity.emails[0] == "ada@example.com"
    assert order.event_time == int(dt.datetime(2026, 12, 2, 10, tzinfo=dt.timezone.utc).timestamp())


def test_a_test_or_cancelled_graphql_order_is_skipped_by_the_webhook_rules():
    shop = ShopifyShopConfig(domain=SHOP, pixel_code="CPIX")
    for fields, rule in (({"test": True}, "test_order"), ({"cancelledAt": "2026-12-02T11:00:00Z"}, "cancelled")):
        action = plan("orders/paid", shopify.webhook_body(full_node(**fields)), shop, received_at=1_800_000_000)
        assert not isinstance(action, SendEvent) and action.details["rule"] == rule


def test_shopify_subscriptions_are_checked_against_our_endpoint_and_topics():
    subscriptions = {
        "data": {
            "webhookSubscriptions": {
                "nodes": [
                    {
                        "id": "gid://shopify/WebhookSubscription/1",
                        "topic": "ORDERS_PAID",
                        "uri": "https://fn.example/shopify",
                    },
                    {
                        "id": "gid://shopify/WebhookSubscription/2",
                        "topic": "ORDERS_CREATE",
                        "uri": "https://elsewhere.example/",
                    },
                ]
            }
        }
    }
    client = shopify_client(
        lambda r: httpx.Response(200, json=subscriptions),
        endpoints=("https://fn.example/shopify",),
        topics=("orders/paid", "orders/create"),
    )
    hooks = client.webhooks()
    assert hooks is not None
    assert [(w.topic, w.status) for w in hooks] == [("orders/paid", "active"), ("orders/create", "missing")]
    assert shopify_client(lambda r: httpx.Response(500)).webhooks() is None  # no endpoint set: not checkable


# --- WooCommerce -------------------------------------------------------------------------------


def woo_order(n: int, status: str = "processing", created: str = "2026-12-02T10:00:00", **fields: Any) -> dict:
    return {
        "id": n,
        "number": str(n),
        "status": status,
        "date_created_gmt": created,
        "date_paid_gmt": created if status in ("processing", "completed") else None,
        "billing": {"email": f"shopper{n}@example.com"},
        **fields,
    }


def woo_client(handler: Any, sleeps: Sleeps | None = None, **options: Any) -> woocommerce.WooCommerceOrders:
    sleep = Sleeps() if sleeps is None else sleeps
    return woocommerce.WooCommerceOrders(
        "woo.example",
        "https://woo.example",
        "ck_test",
        "cs_test",
        transport=httpx.MockTransport(handler),
        sleep=sleep,
        **options,
    )


def test_woocommerce_pages_by_total_pages_with_basic_auth():
    pages = {1: [woo_order(1), woo_order(2, created="2026-11-01T00:00:00")], 2: [woo_order(3)]}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/wp-json/wc/v3/orders"
        assert request.headers["Authorization"] == httpx.BasicAuth("ck_test", "cs_test")._auth_header
        params = request.url.params
        assert params["modified_after"] == "2026-12-01T00:00:00" and params["status"] == "any"
        assert params["per_page"] == "100" and params["dates_are_gmt"] == "true"
        return httpx.Response(200, json=pages[int(params["page"])], headers={"X-WP-TotalPages": "2"})

    client = woo_client(handler)
    assert [o.order_id for o in client.list(SINCE, UNTIL)] == ["1", "3"]
    assert client.calls == 2


def test_woocommerce_retries_429_and_5xx_with_backoff_then_gives_up():
    answers = [
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(503),
        httpx.Response(200, json=[woo_order(1)], headers={"X-WP-TotalPages": "1"}),
    ]
    sleeps = Sleeps()
    client = woo_client(lambda r: answers.pop(0), sleeps)
    assert [o.order_id for o in client.list(SINCE, UNTIL)] == ["1"]
    assert sleeps == [3.0, 1.0] and client.calls == 3

    failing = woo_client(lambda r: httpx.Response(502, text="Bad Gateway"), sleeps := Sleeps(), retries=2)
    with pytest.raises(ApiError, match=r"answered 502: Bad Gateway \(gave up after 3 attempts\)"):
        list(failing.list(SINCE, UNTIL))
    assert len(sleeps) == 2


def test_a_refused_woocommerce_key_is_one_line_naming_the_secret():
    said = {"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.", "data": {}}
    client = woo_client(lambda r: httpx.Response(401, json=said))
    with pytest.raises(AccessRefused) as refused:
        list(client.list(SINCE, UNTIL))
    assert str(refused.value) == (
        "WOOCOMMERCE_API_KEY/WOOCOMMERCE_API_SECRET for WooCommerce site woo.example "
        "was refused (401): Sorry, you cannot list resources."
    )


@pytest.mark.parametrize(
    ("status", "paid", "kind"),
    [
        ("processing", True, PAID),
        ("completed", True, PAID),
        ("on-hold", False, UNPAID),
        ("pending", False, UNPAID),
        ("custom-paid", True, PAID),
        ("refunded", True, REFUNDED),
        ("cancelled", False, CANCELLED),
        ("failed", False, CANCELLED),
        ("wc-trash", False, CANCELLED),
    ],
)
def test_woocommerce_orders_are_classified_by_the_webhook_rules(status, paid, kind):
    order = woo_order(1, status=status, date_paid_gmt="2026-12-02T10:00:00" if paid else None)
    assert woocommerce.classify(order) == kind


def test_woocommerce_webhooks_report_disabled_and_missing_and_repair_sets_active():
    hooks = [
        {"id": 7, "topic": "order.created", "status": "disabled", "delivery_url": "https://fn.example/woo"},
        {"id": 8, "topic": "order.updated", "status": "active", "delivery_url": "https://other.example/"},
    ]
    puts: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            puts.append((request.url.path, json.loads(request.content)))
            return httpx.Response(200, json={"id": 7, "status": "active"})
        return httpx.Response(200, json=hooks, headers={"X-WP-TotalPages": "1"})

    client = woo_client(handler, endpoint="https://fn.example/woo")
    found = client.webhooks()
    assert found == [
        Webhook("order.created", "disabled", "https://fn.example/woo", "7"),
        Webhook("order.updated", "missing"),
    ]
    assert client.repair(found[0]).status == "active"
    assert puts == [("/wp-json/wc/v3/webhooks/7", {"status": "active"})]
    with pytest.raises(ApiError, match="no order.updated webhook to re-enable"):
        client.repair(found[1])


def test_a_read_only_key_refused_on_repair_says_it_needs_read_write():
    client = woo_client(lambda r: httpx.Response(403, json={"message": "Sorry, you are not allowed to edit this."}))
    with pytest.raises(AccessRefused, match=r"^WOOCOMMERCE_API_KEY \(read_write, for --repair\) for .* \(403\)"):
        client.repair(Webhook("order.created", "disabled", "u", "7"))


# --- settings ----------------------------------------------------------------------------------


def test_credentials_are_one_value_or_a_json_object_by_shop():
    assert per_shop("X", "tok", ["a.myshopify.com"]) == {"a.myshopify.com": "tok"}
    assert per_shop("X", '{"https://www.Woo.example/": "k"}', ["woo.example"]) == {"woo.example": "k"}
    with pytest.raises(ConfigError, match="one value serves one shop, and 2 are configured"):
        per_shop("X", "tok", ["a", "b"])
    with pytest.raises(ConfigError, match="X: 'c' is not a configured shop"):
        per_shop("X", '{"c": "k"}', ["a"])


def test_tenants_are_the_webhooks_own_without_their_signing_secrets():
    environ = {"TIKTOK_PIXEL_CODE": "CPIX", "SHOPIFY_SHOP_DOMAIN": SHOP}
    shopify = tenants_of("shopify", environ)
    assert shopify is not None and list(shopify.settings.shops(shopify.tenants)) == [SHOP]
    assert tenants_of("woocommerce", environ) is None  # no site configured: nothing to reconcile there
    many = {
        "PIPELINE_TENANTS": json.dumps(
            {
                "pixels": {"P1": {"pixel_code": "P1"}},
                "woocommerce_sites": {"a.example": {"url": "https://a.example", "pixel_code": "P1"}},
            }
        )
    }
    sites = tenants_of("woocommerce", many)
    assert sites is not None and list(sites.settings.sites(sites.tenants)) == ["a.example"]


def test_shops_without_credentials_say_which_to_set():
    environ = {
        "TIKTOK_PIXEL_CODE": "CPIX",
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "WOOCOMMERCE_SITE_URL": "https://woo.example",
        "WOOCOMMERCE_API_KEY": "ck",
        "WOOCOMMERCE_API_SECRET": "cs",
    }
    found = {shop.key: shop for shop in job.shops(ReconcileSettings.from_env(environ), environ)}
    assert found[SHOP].orders is None and "SHOPIFY_ADMIN_TOKEN" in (found[SHOP].problem or "")
    assert found["woo.example"].orders is not None and found["woo.example"].pixel_code == "CPIX"
    with pytest.raises(ConfigError, match="'nope.example' is not a configured shop"):
        job.shops(ReconcileSettings.from_env(environ), environ, ["nope.example"])


# --- comparison and output ---------------------------------------------------------------------


def test_each_order_gets_the_report_s_outcome_or_missing_or_ignored():
    held = compare.held(
        [
            {"event_id": "e-withheld", "outcome": "withheld_consent"},
            {"event_id": "e-skip", "outcome": "skipped", "rule": "test_order"},
        ],
        [{"event_id": "e-sent", "state": "sent"}, {"event_id": "e-pending", "state": "sending"}],
        [{"event_id": "e-dead", "state": "dead", "code": 40002}],
    )
    assert {k: v.outcome for k, v in held.items()} == {
        "e-withheld": "withheld_consent",
        "e-skip": "skipped",
        "e-sent": "sent",
        "e-pending": "pending",
        "e-dead": "dead",
    }
    assert held["e-skip"].rule == "test_order" and held["e-dead"].code == 40002
    assert compare.state(PAID, None) == "missing" and compare.state(UNPAID, None) == "ignored"
    assert compare.state(TEST, None) == "ignored" and compare.state(PAID, held["e-sent"]) == "sent"


def test_the_table_and_json_name_orders_by_id_and_name_never_by_shopper_data():
    result = job.ShopResult("woocommerce", "woo.example", orders=3, api_calls=2)
    result.classes.update({PAID: 2, CANCELLED: 1})
    result.states.update({"sent": 1, "missing": 1, "ignored": 1})
    result.backfilled.update({"published": 1})
    result.lines.append(job.OrderLine("42", "#42", PAID, "missing", "published", "Purchase published"))
    result.webhooks = [Webhook("order.created", "disabled", "https://fn.example/woo", "7")]
    done = job.Run(SINCE, UNTIL, True, False, [result])
    text = job.render(done)
    assert "order #42 (id 42): published: Purchase published" in text
    assert "order.created DISABLED" in text and "--repair sets a disabled one active again" in text
    assert "@" not in text and "@" not in json.dumps(done.to_json())
    assert done.exit_status == 1 and done.counts()["unhealthy_webhooks"] == 1 and done.counts()["backfilled"] == 1


def test_a_shop_without_orders_listed_says_why_and_the_run_exits_2():
    failed = job.ShopResult("shopify", SHOP, error="SHOPIFY_ADMIN_TOKEN for Shopify shop x was refused (401): no")
    done = job.Run(SINCE, UNTIL, False, False, [failed])
    assert "NOT RECONCILED: SHOPIFY_ADMIN_TOKEN" in job.render(done) and done.exit_status == 2


def test_the_source_definitions_name_the_reconciliation_hooks():
    assert {type(channel).__name__ for channel in job.channels()} == {"ShopifyChannel", "WooCommerceChannel"}
    assert ShopOrder("1", "#1", PAID).body is None


def test_the_report_s_shop_line_compares_orders_in_the_shop_with_what_is_held():
    result = job.ShopResult("shopify", SHOP, orders=5)
    result.classes.update({PAID: 4, TEST: 1})
    result.states.update({"sent": 2, "withheld_consent": 1, "missing": 1, "ignored": 1})
    line = report.shop_line(result.to_json())
    assert line == (
        f"shopify {SHOP}: 5 orders in the shop (4 paid): 2 sent, 1 withheld; "
        "1 paid MISSING (make reconcile ARGS=--backfill)"
    )
    failed = job.ShopResult("woocommerce", "woo.example", error="WOOCOMMERCE_API_KEY/... was refused (401): no")
    said = report.shop_line(failed.to_json())
    assert said.endswith("shop orders not read: WOOCOMMERCE_API_KEY/... was refused (401): no")

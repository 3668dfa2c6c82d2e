"""Reconciliation against the Firestore and Pub/Sub emulators: the comparison, backfill through the order flow,
one Purchase however many times an order arrives, and what is never sent.

The shops are their API clients over ``httpx.MockTransport`` (the shops' HTTP is the unit tests'); the
pipeline's records, the click contexts, the events topic and the sender's claims are the emulators'.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from typing import Any

import httpx
import pytest

from shared.domain.events import order_event_id
from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS, OUTCOME_RECORD
from shared.receive.orders import JOIN_SHOPIFY_CHECKOUT, JOIN_WOO_ORDER_KEY
from shared.reconcile import job
from shared.reconcile.settings import ReconcileSettings
from shared.reconcile.shopify import CHANNEL as SHOPIFY
from shared.reconcile.woocommerce import CHANNEL as WOOCOMMERCE
from tests.unit.test_reconcile import full_node

PIXEL = "CRECONCILE01"
SITE = "woo.reconcile.test"
SHOP = "reconcile.myshopify.com"
NOW = dt.datetime.now(dt.timezone.utc)


def gmt(days: float = 0, minutes: float = 0) -> str:
    return (NOW - dt.timedelta(days=days, minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S")


def woo_order(status: str = "processing", days: float = 0) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:12]
    return {
        "id": random.randrange(10**6, 10**12),
        "number": tag[:6],
        "status": status,
        "currency": "EUR",
        "total": "19.90",
        "order_key": f"wc_order_{tag}",
        "customer_id": 0,
        "date_created_gmt": gmt(days, minutes=5),
        "date_modified_gmt": gmt(days),
        "date_paid_gmt": gmt(days) if status in ("processing", "completed") else None,
        "billing": {"email": f"shopper.{tag}@example.com", "country": "DE"},
        "meta_data": [],
        "line_items": [{"product_id": 7, "quantity": 1, "price": 19.9, "name": "Mug"}],
    }


def environ(store: Any, topic: Any, **extra: str) -> dict[str, str]:
    return {
        "GOOGLE_CLOUD_PROJECT": topic.project,
        "FIRESTORE_COLLECTION_PREFIX": store.prefix,
        "PUBSUB_TOPIC": topic.topic,
        "TIKTOK_PIXEL_CODE": PIXEL,
        "CONSENT_POLICY": "opt-in",
        **extra,
    }


def woo_shop(orders: list[dict[str, Any]], store: Any, topic: Any) -> Any:
    hooks = [
        {"id": n, "topic": topic, "status": "active", "delivery_url": "https://fn.example/woo"}
        for n, topic in enumerate(("order.created", "order.updated"), 1)
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json=orders if request.url.path.endswith("/orders") else hooks, headers={"X-WP-TotalPages": "1"}
        )

    env = environ(
        store, topic, WOOCOMMERCE_SITE_URL=f"https://{SITE}", WOOCOMMERCE_API_KEY="ck", WOOCOMMERCE_API_SECRET="cs"
    )
    (shop,) = WOOCOMMERCE.shops(ReconcileSettings.from_env(env), env, transport=httpx.MockTransport(handler))
    return shop


def woo_id(order: dict[str, Any]) -> str:
    return order_event_id("woocommerce", SITE, str(order["id"]), "Purchase")


def grant(store: Any, kind: str, value: str) -> None:
    store.put_click_context(
        PIXEL, [(kind, value)], {"consent": {"granted": True}, "ttclid": "E.C.P.reconciled"}, dt.timedelta(hours=1)
    )


def test_missing_paid_orders_are_backfilled_once_and_the_rest_accounted_for(store, topic, event_publisher, downstream):
    sent, granted, ungranted, old = woo_order(), woo_order(), woo_order(), woo_order(days=10)
    cancelled, pending = woo_order("cancelled"), woo_order("pending")
    store.claim_once(
        EVENT_CLAIMS,
        (PIXEL, "Purchase", woo_id(sent)),
        dt.timedelta(hours=1),
        event_id=woo_id(sent),
        state="sent",
        source="woocommerce",
    )
    grant(store, JOIN_WOO_ORDER_KEY, granted["order_key"])
    shop = woo_shop([sent, granted, ungranted, old, cancelled, pending], store, topic)
    pipeline = job.Pipeline(lambda: store, lambda: event_publisher)
    since, until = NOW - dt.timedelta(days=12), NOW + dt.timedelta(minutes=1)

    compared = job.run([shop], pipeline, since, until, backfill=False)
    (result,) = compared.shops
    assert result.orders == 6 and dict(result.classes) == {"paid": 4, "cancelled": 1, "unpaid": 1}
    assert dict(result.states) == {"sent": 1, "missing": 3, "ignored": 2}
    assert result.missing_unsent == 3 and compared.exit_status == 1
    assert topic.pull(timeout=1.0) == []  # comparing sends nothing

    done = job.run([shop], pipeline, since, until, backfill=True)
    (result,) = done.shops
    outcomes = {line.order_id: line.outcome for line in result.lines}
    assert outcomes == {
        str(granted["id"]): "published",
        str(ungranted["id"]): "withheld_consent",
        str(old["id"]): "skipped",
        str(cancelled["id"]): "ignored",
    }
    assert result.missing_unsent == 0 and done.exit_status == 0 and done.counts()["backfilled"] == 1
    # Never sent, and recorded as the webhook records them: no consent, and outside the attribution window.
    assert store.get(ORDER_EVENTS, (OUTCOME_RECORD, woo_id(ungranted)))["outcome"] == "withheld_consent"
    assert store.get(ORDER_EVENTS, (OUTCOME_RECORD, woo_id(old)))["rule"] == "outside_window"
    assert store.get(ORDER_EVENTS, (OUTCOME_RECORD, woo_id(cancelled))) is None  # as the webhook: ignored

    # The sender sends the backfilled Purchase; a second backfill and a late webhook of it add nothing.
    messages = topic.pull_all(1)
    assert [json.loads(m.data)["event_id"] for m in messages] == [woo_id(granted)]
    assert downstream.deliver(messages) == ["sent"]
    again = job.run([shop], pipeline, since, until, backfill=True)
    assert dict(again.shops[0].states) == {"sent": 2, "withheld_consent": 1, "skipped": 1, "ignored": 2}
    assert again.shops[0].lines == [
        job.OrderLine(
            str(cancelled["id"]),
            f"#{cancelled['number']}",
            "cancelled",
            "ignored",
            "ignored",
            "status cancelled never produces a Purchase",
        )
    ]
    late = pipeline.deliver(shop)(next(o for o in shop.orders.list(since, until) if o.order_id == str(granted["id"])))
    assert late.kind == "published"
    assert downstream.deliver(topic.pull_all(1)) == ["duplicate"]
    assert len(downstream.events(event_id=woo_id(granted))) == 1
    assert downstream.events(event_id=woo_id(granted))[0]["user"]["ttclid"] == "E.C.P.reconciled"


def shopify_shop(nodes: dict[str, dict[str, Any]], store: Any, topic: Any) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "first" in body["variables"]:  # the listing; else one order in full
            listed = [{k: v for k, v in n.items() if k in job_list_fields} for n in nodes.values()]
            return httpx.Response(200, json={"data": {"orders": {"nodes": listed, "pageInfo": {"hasNextPage": False}}}})
        order_id = body["variables"]["query"].removeprefix("id:")
        return httpx.Response(200, json={"data": {"orders": {"nodes": [nodes[order_id]]}}})

    env = environ(store, topic, SHOPIFY_SHOP_DOMAIN=SHOP, SHOPIFY_ADMIN_TOKEN="shpat_test")
    (shop,) = SHOPIFY.shops(ReconcileSettings.from_env(env), env, transport=httpx.MockTransport(handler))
    return shop


job_list_fields = {
    "id",
    "legacyResourceId",
    "name",
    "createdAt",
    "updatedAt",
    "processedAt",
    "cancelledAt",
    "test",
    "displayFinancialStatus",
}


def shopify_node(**fields: Any) -> dict[str, Any]:
    order_id = str(random.randrange(2**60, 2**62))
    when = (NOW - dt.timedelta(minutes=10)).isoformat(timespec="seconds")
    return {
        **full_node(checkoutToken=f"chk-{uuid.uuid4().hex}", cartToken=f"cart-{uuid.uuid4().hex}", **fields),
        "id": f"gid://shopify/Order/{order_id}",
        "legacyResourceId": order_id,
        "createdAt": when,
        "updatedAt": when,
        "processedAt": when,
    }


def test_shopify_backfill_takes_the_webhook_path_and_records_test_and_cancelled_orders(store, topic, event_publisher):
    paid, test_order = shopify_node(), shopify_node(test=True)
    cancelled = shopify_node(cancelledAt=NOW.isoformat(timespec="seconds"))
    grant(store, JOIN_SHOPIFY_CHECKOUT, paid["checkoutToken"])
    shop = shopify_shop({n["legacyResourceId"]: n for n in (paid, test_order, cancelled)}, store, topic)
    pipeline = job.Pipeline(lambda: store, lambda: event_publisher)
    done = job.run([shop], pipeline, NOW - dt.timedelta(days=1), NOW + dt.timedelta(minutes=1), backfill=True)
    (result,) = done.shops
    assert {line.kind: (line.state, line.outcome) for line in result.lines} == {
        "paid": ("missing", "published"),
        "test": ("ignored", "skipped"),
        "cancelled": ("ignored", "skipped"),
    }
    assert result.api_calls == 4  # one page, then each of the three orders in full
    (message,) = topic.pull_all(1)
    envelope = json.loads(message.data)
    assert envelope["event_id"] == order_event_id("shopify", SHOP, paid["legacyResourceId"], "Purchase")
    assert envelope["user"]["ttclid"] == "E.C.P.reconcile-click"  # the order's own click id wins, as in the webhook
    assert envelope["properties"]["value"] == 27.0
    for node, rule in ((test_order, "test_order"), (cancelled, "cancelled")):
        event_id = order_event_id("shopify", SHOP, node["legacyResourceId"], "Purchase")
        record = store.get(ORDER_EVENTS, (OUTCOME_RECORD, event_id))
        assert record["rule"] == rule and record["shop"] == SHOP  # tagged for the privacy webhooks, as the webhook does

    again = job.run([shop], pipeline, NOW - dt.timedelta(days=1), NOW + dt.timedelta(minutes=1), backfill=False)
    assert again.shops[0].states["skipped"] == 2 and dict(again.shops[0].skipped_by_rule) == {
        "test_order": 1,
        "cancelled": 1,
    }


@pytest.mark.parametrize("backfill", [False, True])
def test_a_shop_whose_api_refuses_is_one_line_and_nothing_else_happens(store, topic, event_publisher, backfill):
    env = environ(store, topic, SHOPIFY_SHOP_DOMAIN=SHOP, SHOPIFY_ADMIN_TOKEN="shpat_wrong")
    transport = httpx.MockTransport(lambda r: httpx.Response(401, json={"errors": "[API] Invalid API key"}))
    (shop,) = SHOPIFY.shops(ReconcileSettings.from_env(env), env, transport=transport)
    done = job.run(
        [shop], job.Pipeline(lambda: store, lambda: event_publisher), NOW - dt.timedelta(days=1), NOW, backfill=backfill
    )
    assert done.errors == [
        f"shopify {SHOP}: SHOPIFY_ADMIN_TOKEN for Shopify shop {SHOP} was refused (401): [API] Invalid API key"
    ]
    assert done.exit_status == 2 and topic.pull(timeout=1.0) == []

"""Shopify webhooks end to end: signed delivery -> webhook -> Pub/Sub -> sender -> TikTok sandbox.

Runs the local stack as real processes (conftest's ``stack``): shop
local-shop.myshopify.com, secret local-shopify-secret, opt-in consent. Consent
is given the way the collect endpoint gives it: a click context with a granted
snapshot under the order's checkout or cart token, in the stack's Firestore.
Every test uses its own order ids and tokens and reads the sandbox filtered by
event_id, because the stack and its sandbox are shared by the whole session.

The webhook publishes every delivery of an order event; the sender's claim on
its deterministic event_id makes them one Purchase (shared.receive.orders). Once that
claim says "sent", every later copy is answered "duplicate", so one event at
the sandbox plus a "sent" claim means one Purchase for good.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.config import DEFAULT_SHOPIFY_API_VERSION
from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS, WEBHOOK_DELIVERIES, Store
from shared.receive.orders import JOIN_SHOPIFY_CART, JOIN_SHOPIFY_CHECKOUT
from tests.emulator.test_shopify_webhook import DENIED, GRANTED, new_order
from tests.helpers import sandbox_events, shopify_signature, wait_for_sandbox_events, wait_until
from tests.unit.test_shopify_mapping import SHOP, documented_order

pytestmark = pytest.mark.stack

SANDBOX_KEYS = {"event_source_id", "test_event_code", "received_at", "request_id"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=10) as http:
        yield http


def deliver(client, stack, payload: dict | bytes, topic: str = "orders/paid", *, delivery_id: str | None = None,
            secret: str | None = None) -> httpx.Response:  # fmt: skip
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": stack.settings["SHOPIFY_SHOP_DOMAIN"],
        "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION,
        "X-Shopify-Webhook-Id": delivery_id or str(uuid.uuid4()),
        "X-Shopify-Hmac-Sha256": shopify_signature(body, secret or stack.settings["SHOPIFY_WEBHOOK_SECRET"]),
    }
    return client.post(stack.url("shopify_webhook") + "/", content=body, headers=headers)


def grant(stack, stack_store: Store, kind: str, token: str, consent: dict | None = None, **context) -> None:
    pixel = stack.settings["TIKTOK_PIXEL_CODE"]
    stack_store.put_click_context(pixel, [(kind, token)], {"consent": consent or GRANTED, **context},
                                  dt.timedelta(hours=1))  # fmt: skip


def purchase_id(order: dict) -> str:
    return f"shopify:{SHOP}:order:{order['id']}:Purchase"


def claim_state(stack, stack_store: Store, order: dict) -> str | None:
    """The state of the sender's claim on the order's Purchase (the order's only claim)."""
    claim = stack_store.get(EVENT_CLAIMS, (stack.settings["TIKTOK_PIXEL_CODE"], "Purchase", purchase_id(order)))
    return None if claim is None else claim.get("state")


def sent_after_sentinel(client, stack, stack_store, event_id: str) -> list[dict]:
    """The sandbox's events for ``event_id`` once a later, consented order has gone all the way through."""
    sentinel = new_order()
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, sentinel["checkout_token"])
    assert deliver(client, stack, sentinel).json()["outcome"] == "published"
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(sentinel))
    return sandbox_events(stack.url("sandbox"), event_id=event_id)


def test_a_signed_paid_order_reaches_tiktok_as_exactly_this_event(client, stack, stack_store):
    # An hour ago: the webhook refuses order bodies older than SHOPIFY_MAX_ORDER_AGE_DAYS as replays.
    processed = int(time.time()) - 3600
    processed_at = dt.datetime.fromtimestamp(processed, dt.timezone.utc).isoformat()
    order = documented_order(
        processed_at=processed_at,
        created_at=processed_at,
        updated_at=processed_at,
        checkout_token=f"chk-{uuid.uuid4().hex}",
        cart_token=f"cart-{uuid.uuid4().hex}",
        phone="+1 (213) 373-4253",
        browser_ip="203.0.113.24",
        client_details={"browser_ip": "203.0.113.24", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) StackTest/1"},
        note_attributes=[{"name": "_ttclid", "value": "E.C.P.stack-exact"}, {"name": "_ttp", "value": "ttp.exact"}],
        landing_site="/products/aviator-sunglasses?ttclid=E.C.P.stack-exact&utm_source=tiktok",
        referring_site="https://www.tiktok.com/",
    )
    for index, item in enumerate(order["line_items"], start=1):
        item["variant_id"] = 44_000_000_000_000_000 + index
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"], ttclid="E.C.P.from-context")

    response = deliver(client, stack, order)
    assert (response.status_code, response.json()["outcome"]) == (200, "published")

    [received] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(order))
    assert received["event_source_id"] == stack.settings["TIKTOK_PIXEL_CODE"]
    assert {k: v for k, v in received.items() if k not in SANDBOX_KEYS} == {
        "event": "Purchase",
        "event_time": processed,
        "event_id": "shopify:local-shop.myshopify.com:order:820982911946154508:Purchase",
        "user": {
            "email": [sha("jon@example.com"), sha("john@example.com")],
            "phone": [sha("+12133734253")],
            "external_id": [sha("115310627314723954")],
            # The billing address's person (Steve Shipper of Shippington), names and location alike.
            "first_name": sha("steve"),
            "last_name": sha("shipper"),
            "zip_code": sha("40003"),
            "city": "shippington",
            "state": "ky",
            "country": "us",
            "ttclid": "E.C.P.stack-exact",
            "ttp": "ttp.exact",
            "ip": "203.0.113.24",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) StackTest/1",
            "locale": "en",
        },
        "properties": {
            "currency": "USD",
            "value": 404.95,
            "content_type": "product",
            "contents": [
                {"content_id": f"4400000000000000{index}", "content_name": name, "price": price, "quantity": 1}
                for index, (name, price) in enumerate(
                    [("Aviator sunglasses", 89.99), ("Lens Protection Plan (2 Year)", 19.99),
                     ("Premium Leather Case", 24.99), ("Mid-century lounger", 159.99), ("Coffee table", 119.99)],
                    start=1,
                )
            ],
            "num_items": 5,
            "order_id": "820982911946154508",
            "shop_id": "local-shop.myshopify.com",
        },
        "page": {
            "url": "https://local-shop.myshopify.com/products/aviator-sunglasses?ttclid=E.C.P.stack-exact&utm_source=tiktok",
            "referrer": "https://www.tiktok.com/",
        },
        "limited_data_use": False,
    }  # fmt: skip


def test_twenty_concurrent_duplicate_deliveries_give_one_event(client, stack, stack_store):
    order = new_order()
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    delivery_id = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: deliver(client, stack, order, delivery_id=delivery_id), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert [r.json()["outcome"] for r in responses] == ["published"] * 20  # the sender dedupes, not the webhook
    assert len(sent_after_sentinel(client, stack, stack_store, purchase_id(order))) == 1
    assert wait_until(lambda: claim_state(stack, stack_store, order) == "sent", timeout=10)


def test_orders_create_then_orders_paid_give_one_purchase(client, stack, stack_store):
    order = new_order()
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    outcomes = [deliver(client, stack, order, topic).json()["outcome"] for topic in ("orders/create", "orders/paid")]
    assert outcomes == ["published", "published"]
    assert len(sent_after_sentinel(client, stack, stack_store, purchase_id(order))) == 1
    assert wait_until(lambda: claim_state(stack, stack_store, order) == "sent", timeout=10)


@pytest.mark.parametrize("tamper", ["forged", "truncated"])
def test_a_forged_or_truncated_delivery_gets_401_and_leaves_no_trace(client, stack, stack_store, tamper):
    order = new_order()
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    body, delivery_id = json.dumps(order).encode(), str(uuid.uuid4())
    if tamper == "forged":
        response = deliver(client, stack, body, delivery_id=delivery_id, secret="not-the-shops-secret")
    else:
        signature = shopify_signature(body, stack.settings["SHOPIFY_WEBHOOK_SECRET"])
        response = client.post(
            stack.url("shopify_webhook") + "/",
            content=body[:-40],
            headers={"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": SHOP,
                     "X-Shopify-Webhook-Id": delivery_id, "X-Shopify-Hmac-Sha256": signature},
        )  # fmt: skip
    assert response.status_code == 401
    assert stack_store.get(WEBHOOK_DELIVERIES, ("shopify", SHOP, "orders/paid", delivery_id)) is None
    assert stack_store.get(ORDER_EVENTS, ("shopify", SHOP, str(order["id"]), "Purchase")) is None
    assert sent_after_sentinel(client, stack, stack_store, purchase_id(order)) == []
    assert claim_state(stack, stack_store, order) is None  # nor did anything reach the sender


def test_a_malformed_body_from_the_shop_gets_a_2xx_with_a_reason(client, stack):
    response = deliver(client, stack, b'{"id": 12, "line_items": [')
    assert (response.status_code, response.json()) == (200, {"outcome": "rejected", "reason": "body is not valid JSON"})


def test_a_ttclid_stored_under_the_cart_token_ends_up_on_the_purchase(client, stack, stack_store):
    order = new_order(note_attributes=[], landing_site="/collections/all")
    grant(stack, stack_store, JOIN_SHOPIFY_CART, order["cart_token"], ttclid="E.C.P.cart-stack", ttp="ttp.cart")
    assert deliver(client, stack, order).json()["outcome"] == "published"
    [received] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(order))
    assert (received["user"]["ttclid"], received["user"]["ttp"]) == ("E.C.P.cart-stack", "ttp.cart")


def test_consent_denied_means_no_purchase_is_sent(client, stack, stack_store):
    order = new_order()
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"], consent=DENIED, ttclid="E.C.P.no")
    assert deliver(client, stack, order).json()["outcome"] == "withheld_consent"
    assert sent_after_sentinel(client, stack, stack_store, purchase_id(order)) == []


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_30_mb_body_is_refused_with_413_by_the_running_function(client, stack, chunked):
    size, sent = 30 * 1024 * 1024, [0]

    def body():
        while sent[0] < size:
            sent[0] += 1 << 16
            yield b"x" * (1 << 16)

    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Hmac-Sha256": "AAAA"}
    if not chunked:
        headers["Content-Length"] = str(size)
    try:
        response = client.post(stack.url("shopify_webhook") + "/", content=body(), headers=headers)
        assert response.status_code == 413
    except httpx.TransportError:  # the server may close before the client is done sending: refused all the same
        pass
    # The server stopped taking it before its end. How far the client gets depends on loopback socket
    # buffers (several MB each way, more on a busy machine: 3 to 16 MB measured), so the exact bound is
    # asserted where it can be: bytes read in-process (test_shopify_hostile.py) and the worker's peak
    # memory (tests/reliability/test_oversized_bodies.py).
    assert sent[0] < size
    healthy = deliver(client, stack, b'{"id": 1}', "products/update")
    assert (healthy.status_code, healthy.json()["outcome"]) == (200, "ignored")

"""A shopper's "no" and Global Privacy Control, end to end: collect -> Firestore -> order webhooks -> sandbox.

Under ``CONSENT_POLICY=opt-out`` an order with no stored answer is sent. A
denial posted to collect is stored (the answer alone) under the join keys the
request proves it holds, so the later Shopify and WooCommerce orders of that
shopper are withheld; ``Sec-GPC: 1`` makes the browser event and the later
Purchase carry ``limited_data_use: true``, or, where the pixel's ``gpc`` is
``deny``, withholds them. Everything is counted at the stack's TikTok sandbox,
behind a barrier order that went all the way through after the one that must not.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.domain.consent import ConsentSnapshot, decide
from shared.receive.orders import JOIN_SHOPIFY_CART, JOIN_WOO_ORDER_KEY
from tests.conftest import RunningStack, running_stack
from tests.emulator.test_shopify_webhook import new_order
from tests.helpers import sandbox_events, wait_for_sandbox_events
from tests.stack.test_collect_stack import CHROME, ORIGIN
from tests.stack.test_shopify_stack import deliver
from tests.stack.test_shopify_stack import purchase_id as shopify_purchase_id
from tests.stack.test_woocommerce_stack import fresh_order
from tests.stack.test_woocommerce_stack import post as woo_post
from tests.stack.test_woocommerce_stack import purchase_id as woo_purchase_id

pytestmark = pytest.mark.stack

DENIALS = {"granted:false": False, "ad_storage:denied": {"ad_storage": "denied"},
           "marketingAllowed:false": {"marketingAllowed": False}}  # fmt: skip
GRANT = {"ad_storage": "granted", "ad_user_data": "granted"}
DENIAL_ONLY = {"consent", "pixel_code", "join_kind", "updated_at", "expire_at"}


@pytest.fixture(scope="module")
def opt_out(emulators: Any) -> Iterator[RunningStack]:
    with running_stack(emulators, CONSENT_POLICY="opt-out") as running:
        yield running


@pytest.fixture(scope="module")
def opt_out_store(opt_out: RunningStack, firestore_client: Any) -> Any:
    from shared.infra.store import Store

    return Store(firestore_client, prefix=opt_out.settings["FIRESTORE_COLLECTION_PREFIX"])


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def cart_token() -> str:
    return f"cart-{uuid.uuid4().hex}"


def order_key() -> str:
    return f"wc_order_{uuid.uuid4().hex[:16]}"  # wc_order_ + 12 or more letters and digits: a proven key


def collect(stack: RunningStack, consent: Any, join_keys: dict[str, str], *, events: list | None = None,
            **headers: str) -> httpx.Response:  # fmt: skip
    body: dict[str, Any] = {
        "pixel_code": stack.settings["TIKTOK_PIXEL_CODE"],
        "context": {"ttclid": f"E.C.P.{uuid.uuid4().hex[:12]}", "ttp": "stack-ttp", "join_keys": join_keys,
                    "page_url": "http://127.0.0.1:8000/products/shirt", "user": {"email": "shopper@example.com"}},
        "events": events or [],
    }  # fmt: skip
    if consent is not None:
        body["consent"] = consent
    sent = {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME, **headers}
    return httpx.post(stack.url("collect") + "/", content=json.dumps(body).encode(), headers=sent, timeout=10)


def add_to_cart() -> dict[str, Any]:
    return {"event": "AddToCart", "event_id": f"evt-{uuid.uuid4().hex}", "event_time": int(time.time() * 1000),
            "properties": {"currency": "USD", "value": 25}}  # fmt: skip


def shopify_order(cart: str) -> dict[str, Any]:
    # No customer and no landing click: the cart token is the order's only way to its context.
    return new_order(cart_token=cart, customer=None, note_attributes=[])


def woo_order(key: str) -> dict[str, Any]:
    return fresh_order("processing", order_key=key, id=random.randrange(10**6, 10**12))


def sent_after_barrier(client: httpx.Client, stack: RunningStack, event_ids: list[str]) -> list[dict]:
    """The sandbox's events for ``event_ids``, read once later orders with no stored answer went through."""
    shopify, woo = shopify_order(cart_token()), woo_order(order_key())
    assert deliver(client, stack, shopify).json()["outcome"] == "published"
    assert woo_post(client, stack, woo).json()["outcome"] == "published"
    sandbox = stack.url("sandbox")
    wait_for_sandbox_events(sandbox, 1, event_id=shopify_purchase_id(shopify))
    wait_for_sandbox_events(sandbox, 1, event_id=woo_purchase_id(stack, woo))
    return [event for event_id in event_ids for event in sandbox_events(sandbox, event_id=event_id)]


# --- a "no" is remembered ---------------------------------------------------------------------------


@pytest.mark.parametrize("denial", list(DENIALS.values()), ids=list(DENIALS))
def test_a_denial_through_collect_withholds_the_later_shopify_and_woocommerce_orders_under_opt_out(
    client, opt_out, opt_out_store, denial
):
    cart, key = cart_token(), order_key()
    answer = collect(opt_out, denial, {"shopify_cart_token": cart, "woocommerce_order_key": key})
    assert answer.status_code == 204 and answer.headers["X-Collect-Consent"] == "denied"
    # The answer alone, under both keys: no click id, cookie, address, user agent, page or hashed email.
    pixel = opt_out.settings["TIKTOK_PIXEL_CODE"]
    for join_key in ((JOIN_SHOPIFY_CART, cart), (JOIN_WOO_ORDER_KEY, key)):
        stored = opt_out_store.find_click_context(pixel, [join_key])
        assert set(stored) == DENIAL_ONLY
        assert decide(ConsentSnapshot.model_validate(stored["consent"]), "opt-out").reason == "denied"

    shopify, woo = shopify_order(cart), woo_order(key)
    assert deliver(client, opt_out, shopify).json()["outcome"] == "withheld_consent"
    assert woo_post(client, opt_out, woo).json()["outcome"] == "withheld_consent"
    assert sent_after_barrier(client, opt_out, [shopify_purchase_id(shopify), woo_purchase_id(opt_out, woo)]) == []


def test_a_grant_after_a_denial_lets_the_later_orders_through(client, opt_out, opt_out_store):
    cart, key = cart_token(), order_key()
    keys = {"shopify_cart_token": cart, "woocommerce_order_key": key}
    assert collect(opt_out, {"granted": False}, keys).status_code == 204
    assert collect(opt_out, GRANT, keys).status_code == 200
    stored = opt_out_store.find_click_context(opt_out.settings["TIKTOK_PIXEL_CODE"], [(JOIN_SHOPIFY_CART, cart)])
    assert stored["consent"]["granted"] is None and stored["consent"]["ad_user_data"] == "granted"

    shopify, woo = shopify_order(cart), woo_order(key)
    assert deliver(client, opt_out, shopify).json()["outcome"] == "published"
    assert woo_post(client, opt_out, woo).json()["outcome"] == "published"
    sandbox = opt_out.url("sandbox")
    [purchase] = wait_for_sandbox_events(sandbox, 1, event_id=shopify_purchase_id(shopify))
    assert purchase["user"]["ttclid"].startswith("E.C.P.")  # the grant's click, joined again
    wait_for_sandbox_events(sandbox, 1, event_id=woo_purchase_id(opt_out, woo))


def test_a_denial_with_keys_it_cannot_prove_stores_nothing_under_them(client, opt_out, opt_out_store):
    guessed = "wc_order_1"  # too short to be WooCommerce's random key: anybody could post it
    answer = collect(opt_out, {"granted": False}, {"woocommerce_order_key": guessed, "customer_id": "42"})
    assert answer.status_code == 204
    assert "context.join_keys.woocommerce_order_key" in answer.headers["X-Collect-Ignored"]
    pixel = opt_out.settings["TIKTOK_PIXEL_CODE"]
    assert opt_out_store.find_click_context(pixel, [(JOIN_WOO_ORDER_KEY, guessed), ("customer_id", "42")]) is None
    woo = woo_order(guessed)
    assert woo_post(client, opt_out, woo).json()["outcome"] == "published"  # the policy decides, as before
    wait_for_sandbox_events(opt_out.url("sandbox"), 1, event_id=woo_purchase_id(opt_out, woo))


# --- Global Privacy Control ---------------------------------------------------------------------------


def test_sec_gpc_gives_limited_data_use_on_the_browser_event_and_the_later_orders(client, opt_out, opt_out_store):
    cart, key, event = cart_token(), order_key(), add_to_cart()
    answer = collect(opt_out, None, {"shopify_cart_token": cart, "woocommerce_order_key": key}, events=[event],
                     **{"Sec-GPC": "1"})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["limited_data_use"] is True
    sandbox = opt_out.url("sandbox")
    [browser] = wait_for_sandbox_events(sandbox, 1, event_id=event["event_id"])
    assert browser["limited_data_use"] is True
    stored = opt_out_store.find_click_context(opt_out.settings["TIKTOK_PIXEL_CODE"], [(JOIN_SHOPIFY_CART, cart)])
    assert stored["consent"]["gpc"] is True

    shopify, woo = shopify_order(cart), woo_order(key)
    assert deliver(client, opt_out, shopify).json()["outcome"] == "published"
    assert woo_post(client, opt_out, woo).json()["outcome"] == "published"
    [purchase] = wait_for_sandbox_events(sandbox, 1, event_id=shopify_purchase_id(shopify))
    [woo_purchase] = wait_for_sandbox_events(sandbox, 1, event_id=woo_purchase_id(opt_out, woo))
    assert purchase["limited_data_use"] is True and woo_purchase["limited_data_use"] is True


def test_navigator_gpc_forwarded_in_the_body_counts_as_sec_gpc(client, opt_out):
    cart, event = cart_token(), add_to_cart()
    answer = collect(opt_out, {**GRANT, "gpc": True}, {"shopify_cart_token": cart}, events=[event])
    assert answer.status_code == 200 and answer.json()["limited_data_use"] is True
    [browser] = wait_for_sandbox_events(opt_out.url("sandbox"), 1, event_id=event["event_id"])
    assert browser["limited_data_use"] is True


def test_gpc_deny_withholds_the_browser_event_and_the_later_orders(client, emulators, firestore_client):
    from shared.infra.store import Store

    with running_stack(emulators, CONSENT_POLICY="opt-out", CONSENT_GPC="deny") as stack:
        store = Store(firestore_client, prefix=stack.settings["FIRESTORE_COLLECTION_PREFIX"])
        cart, key, event = cart_token(), order_key(), add_to_cart()
        answer = collect(stack, GRANT, {"shopify_cart_token": cart, "woocommerce_order_key": key}, events=[event],
                         **{"Sec-GPC": "1"})  # fmt: skip
        assert answer.status_code == 204 and answer.headers["X-Collect-Consent"] == "denied"
        stored = store.find_click_context(stack.settings["TIKTOK_PIXEL_CODE"], [(JOIN_SHOPIFY_CART, cart)])
        assert set(stored) == DENIAL_ONLY and stored["consent"]["gpc"] is True

        shopify, woo = shopify_order(cart), woo_order(key)
        assert deliver(client, stack, shopify).json()["outcome"] == "withheld_consent"
        assert woo_post(client, stack, woo).json()["outcome"] == "withheld_consent"
        withheld = [event["event_id"], shopify_purchase_id(shopify), woo_purchase_id(stack, woo)]
        assert sent_after_barrier(client, stack, withheld) == []

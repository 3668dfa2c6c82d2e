"""The demo shop page as the README and `make run`'s banner send a newcomer to it: no cart token given.

Accept then grants consent for a fresh cart token the page generates and shows, with the command
that places the order joining it; that order reaches the sandbox with the click and the consent.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid

import httpx
import pytest

from shared.config import DEFAULT_SHOPIFY_API_VERSION
from shared.receive.orders import JOIN_SHOPIFY_CART
from tests.helpers import load_fixture, shopify_signature, wait_for_sandbox_events, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def test_accept_without_a_cart_grants_for_a_fresh_cart_token_and_an_order_for_it_joins_the_click(
    browser, demo_site, demo_collect, stack, stack_store
):
    pixel, click_id = stack.settings["TIKTOK_PIXEL_CODE"], f"E.C.P.{uuid.uuid4().hex}"
    assert not demo_collect.endswith(":8080/")  # collect on another port than the page's default: ?endpoint= wins
    browser.get(demo_site.page(endpoint=demo_collect, pixel=pixel, transport="fetch", ttclid=click_id))
    cart = browser.execute_script("return window.demoCart")
    assert re.fullmatch(r"[0-9a-f]{32}", cart)
    needs = browser.find_element("id", "join-key").text
    assert "?cart=" in needs and cart in needs  # what it needs, and what it does without it
    assert not browser.find_element("id", "next").is_displayed()

    browser.find_element("id", "grant").click()
    wait_until(lambda: any(o["outcome"] == "accepted" for o in browser.execute_script("return window.outcomes")))
    shown = browser.find_element("id", "next").text
    assert f"make demo ARGS='--cart {cart}'" in shown and "granted" in shown
    context = wait_until(lambda: stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CART, cart)]))
    assert context["consent"]["granted"] is True

    # The order the page says to place (`make demo --cart` places it in the local shop), for that cart.
    order = load_fixture("shopify/orders_create_2026-04_documented.json")["response"]
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    order.update(id=random.randrange(2**60, 2**62), cart_token=cart, checkout_token=uuid.uuid4().hex, test=False)
    order.update(created_at=stamp, processed_at=stamp, updated_at=stamp, financial_status="paid", cancelled_at=None)
    raw = json.dumps(order).encode()
    answer = httpx.post(stack.url("shopify_webhook") + "/", content=raw, timeout=15, headers={
        "Content-Type": "application/json", "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Shop-Domain": stack.settings["SHOPIFY_SHOP_DOMAIN"],
        "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Hmac-Sha256": shopify_signature(raw, stack.settings["SHOPIFY_WEBHOOK_SECRET"]),
    })  # fmt: skip
    assert answer.json().get("outcome") == "published", answer.text
    event_id = f"shopify:{stack.settings['SHOPIFY_SHOP_DOMAIN']}:order:{order['id']}:Purchase"
    (purchase,) = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)
    assert purchase["event_source_id"] == pixel and purchase["event"] == "Purchase"
    assert purchase["user"]["ttclid"] == click_id


def test_each_visit_without_a_cart_gets_its_own_token_and_a_given_cart_is_kept(browser, demo_site, demo_collect):
    tokens = set()
    for _ in range(2):
        browser.get(demo_site.page(endpoint=demo_collect, transport="fetch"))
        tokens.add(browser.execute_script("return window.demoCart"))
    assert len(tokens) == 2
    browser.get(demo_site.page(endpoint=demo_collect, transport="fetch", cart="given-cart-token"))
    assert browser.execute_script("return [window.demoCart, window.demoCartGenerated]") == ["given-cart-token", False]
    assert "given-cart-token" in browser.find_element("id", "join-key").text

"""snippets/shopify-custom-pixel.js in a real Chromium, in a stand-in for Shopify's pixel sandbox.

The pixel runs in a sandboxed ``srcdoc`` iframe (``sandbox="allow-scripts"``)
on a loopback page, as in Shopify's sandbox: an opaque origin, so its requests
carry ``Origin: null`` and the collect key is what admits them. ``analytics``,
``browser``, ``init``, ``api`` and ``ttq`` are small stand-ins with the shapes of
Shopify's Web Pixels API and TikTok's pixel.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest

from shared.receive.orders import JOIN_SHOPIFY_CHECKOUT
from tests.helpers import ROOT, wait_for_sandbox_events, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.stack]

SHOP = "test-shop.myshopify.com"
CUSTOMER = "7001"

SANDBOX = """
window.ttq = {calls: [], track: function (n, p, o) { this.calls.push([n, p, o]); }};
var handlers = {}, consentCallbacks = [], jar = {};
window.analytics = {subscribe: function (name, cb) { (handlers[name] = handlers[name] || []).push(cb); }};
window.publish = function (name, event) { (handlers[name] || []).forEach(function (cb) { cb(event); }); };
window.browser = {cookie: {
  get: function (name) { return Promise.resolve(jar[name] || ''); },
  set: function (text) { var kv = text.split(';')[0].split('='); jar[kv[0]] = kv[1]; return Promise.resolve(text); },
}};
window.jar = jar;
window.api = {customerPrivacy: {subscribe: function (name, cb) { consentCallbacks.push(cb); }}};
window.changeConsent = function (p) { consentCallbacks.forEach(function (cb) { cb({customerPrivacy: p}); }); };
window.init = %(init)s;
"""


def open_sandbox(browser: Any, site: Any, init: dict[str, Any], endpoint: str, pixel: str, key: str) -> None:
    """Load the custom pixel into a sandboxed iframe of a loopback page and switch into it."""
    source = (ROOT / "snippets" / "shopify-custom-pixel.js").read_text()
    source = source.replace("https://REGION-PROJECT.cloudfunctions.net/collect", endpoint)
    source = source.replace("YOUR_TIKTOK_PIXEL_CODE", pixel).replace("YOUR_PUBLIC_COLLECT_KEY", key)
    page = f"<!doctype html><script>{SANDBOX % {'init': json.dumps(init)}}</script><script>{source}</script>"
    browser.get(site.origin + "/")  # any loopback page: the iframe inherits its address space
    browser.execute_script(
        "var f = document.createElement('iframe'); f.id = 'pixel'; f.sandbox = 'allow-scripts';"
        "f.srcdoc = arguments[0]; document.body.appendChild(f);",
        page,
    )
    browser.switch_to.frame(browser.find_element("id", "pixel"))
    wait_until(lambda: browser.execute_script("return typeof publish === 'function' && typeof COLLECT === 'object'"))


def test_the_custom_pixel_is_admitted_by_its_key_without_origin_and_joins_the_checkout(
    browser, demo_site, demo_collect, stack, stack_store
):
    pixel, click_id = stack.settings["TIKTOK_PIXEL_CODE"], f"E.C.P.{uuid.uuid4().hex}"
    landing = f"https://{SHOP}/products/shirt?ttclid={click_id}"
    init = {
        "customerPrivacy": {"marketingAllowed": True, "saleOfDataAllowed": True,
                            "analyticsProcessingAllowed": True, "preferencesProcessingAllowed": True},
        "data": {"shop": {"myshopifyDomain": SHOP}, "customer": {"id": CUSTOMER}, "cart": None},
        "context": {"document": {"location": {"href": landing}}, "navigator": {"language": "en-US"}},
    }  # fmt: skip
    open_sandbox(browser, demo_site, init, demo_collect, pixel, stack.settings["COLLECT_KEYS"].split(",")[0])

    added = {
        "id": f"sh-{uuid.uuid4()}", "name": "product_added_to_cart", "timestamp": "2026-11-24T10:00:00.000Z",
        "context": {"document": {"location": {"href": landing}}},
        "data": {"cartLine": {"quantity": 2, "merchandise": {
            "id": "gid://shopify/ProductVariant/4242", "price": {"amount": 25.0, "currencyCode": "USD"},
            "product": {"title": "Blue shirt"}}}},
    }  # fmt: skip
    browser.execute_script("publish('product_added_to_cart', arguments[0])", added)
    [event] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=added["id"])
    assert event["event"] == "AddToCart" and event["user"]["ttclid"] == click_id
    assert event["properties"]["value"] == 50 and event["properties"]["contents"][0]["content_id"] == "4242"
    assert event["user"]["external_id"] == [hashlib.sha256(CUSTOMER.encode()).hexdigest()]
    ttq_call = browser.execute_script("return ttq.calls[0]")
    assert ttq_call[0] == "AddToCart" and ttq_call[2] == {"event_id": added["id"]}
    assert browser.execute_script("return jar.ttclid") == click_id  # kept for the checkout pages

    token = f"chk-{uuid.uuid4().hex}"
    completed = {
        "id": f"sh-{uuid.uuid4()}", "name": "checkout_completed", "timestamp": "2026-11-24T10:05:00.000Z",
        "context": {"document": {"location": {"href": f"https://{SHOP}/checkouts/cn/{token}/thank-you"}}},
        "data": {"checkout": {
            "token": token, "email": "Jane.Doe@Example.com", "phone": None, "currencyCode": "USD",
            "totalPrice": {"amount": 50.0, "currencyCode": "USD"},
            "order": {"id": "gid://shopify/Order/820982911946154508"},
            "lineItems": [{"title": "Blue shirt", "quantity": 2, "variant": {
                "id": "gid://shopify/ProductVariant/4242", "price": {"amount": 25.0, "currencyCode": "USD"}}}]}},
    }  # fmt: skip
    browser.execute_script("publish('checkout_completed', arguments[0])", completed)
    context = wait_until(lambda: stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CHECKOUT, token)]))
    assert context["ttclid"] == click_id
    assert context["consent"]["marketing_allowed"] is True
    assert context["user"]["email"] == [hashlib.sha256(b"jane.doe@example.com").hexdigest()]
    assert context["customer_key"] == hashlib.sha256(CUSTOMER.encode()).hexdigest()
    purchase = browser.execute_script("return ttq.calls[1]")
    assert purchase[0] == "Purchase"
    assert purchase[2] == {"event_id": f"shopify:{SHOP}:order:820982911946154508:Purchase"}


def test_a_consent_withdrawn_in_the_sandbox_stops_storing(browser, demo_site, demo_collect, stack, stack_store):
    pixel = stack.settings["TIKTOK_PIXEL_CODE"]
    init = {
        "customerPrivacy": {"marketingAllowed": True, "saleOfDataAllowed": True},
        "data": {"shop": {"myshopifyDomain": SHOP}, "customer": None, "cart": None},
        "context": {"document": {"location": {"href": f"https://{SHOP}/"}}},
    }
    open_sandbox(browser, demo_site, init, demo_collect, pixel, stack.settings["COLLECT_KEYS"].split(",")[0])
    first, second = f"chk-{uuid.uuid4().hex}", f"chk-{uuid.uuid4().hex}"

    def started(token: str) -> dict[str, Any]:
        return {"id": f"sh-{uuid.uuid4()}", "name": "checkout_started", "timestamp": "2026-11-24T10:00:00Z",
                "data": {"checkout": {"token": token, "totalPrice": {"amount": 5, "currencyCode": "USD"}}}}  # fmt: skip

    browser.execute_script("publish('checkout_started', arguments[0])", started(first))
    wait_until(lambda: stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CHECKOUT, first)]))
    browser.execute_script("changeConsent({marketingAllowed: false, saleOfDataAllowed: false})")
    # The denial for the first checkout replaces its context with the "no" alone: proof the request was processed.
    browser.execute_script("publish('checkout_started', arguments[0])", started(first))
    wait_until(lambda: stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CHECKOUT, first)])["consent"][
        "marketing_allowed"] is False)  # fmt: skip
    assert "ttclid" not in stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CHECKOUT, first)])
    browser.execute_script("publish('checkout_started', arguments[0])", started(second))
    browser.execute_script("changeConsent({marketingAllowed: true, saleOfDataAllowed: true})")
    barrier = f"chk-{uuid.uuid4().hex}"
    browser.execute_script("publish('checkout_started', arguments[0])", started(barrier))
    wait_until(lambda: stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CHECKOUT, barrier)]))
    # The checkout started while withdrawn holds the "no" alone: no grant, no click id.
    withdrawn = stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CHECKOUT, second)])
    assert withdrawn["consent"]["marketing_allowed"] is False and "ttclid" not in withdrawn


def test_the_custom_pixel_sends_the_customer_signature_the_theme_left_in_a_cookie(
    browser, demo_site, demo_collect, stack, stack_store
):
    from shared.receive.collect.keys import sign_customer_id
    from shared.receive.orders import JOIN_CUSTOMER
    from tests.browser.conftest import BROWSER_SIGNING_SECRET

    pixel, customer = stack.settings["TIKTOK_PIXEL_CODE"], str(uuid.uuid4().int % 10**13)
    init = {
        "customerPrivacy": {"marketingAllowed": True, "saleOfDataAllowed": True},
        "data": {"shop": {"myshopifyDomain": SHOP}, "customer": {"id": f"gid://shopify/Customer/{customer}"},
                 "cart": None},
        "context": {"document": {"location": {"href": f"https://{SHOP}/?ttclid=E.C.P.{customer}"}}},
    }  # fmt: skip
    open_sandbox(browser, demo_site, init, demo_collect, pixel, stack.settings["COLLECT_KEYS"].split(",")[0])
    # What the theme's collect.js writes with consent: "<id>.<HMAC-SHA256 of the id>".
    browser.execute_script(
        "jar.tt_customer = arguments[0]", f"{customer}.{sign_customer_id(customer, BROWSER_SIGNING_SECRET)}"
    )
    token = f"chk-{uuid.uuid4().hex}"
    started = {"id": f"sh-{uuid.uuid4()}", "name": "checkout_started", "timestamp": "2026-11-24T10:00:00Z",
               "data": {"checkout": {"token": token, "totalPrice": {"amount": 5, "currencyCode": "USD"}}}}  # fmt: skip
    browser.execute_script("publish('checkout_started', arguments[0])", started)
    context = wait_until(lambda: stack_store.find_click_context(pixel, [(JOIN_CUSTOMER, customer)]))
    assert context["ttclid"] == f"E.C.P.{customer}"
    assert stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CHECKOUT, token)])["ttclid"] == f"E.C.P.{customer}"


def test_without_storage_the_custom_pixel_still_retries_a_503_in_its_load(
    browser, demo_site, demo_collect, stack, stack_store
):
    # This stand-in sandbox has no browser.localStorage (as where storage is unavailable): no next-load resend,
    # but the load's own retry still goes, once, and the context is stored.
    from tests.browser.test_collect_retry_browser import FlakyCollect

    pixel, token = stack.settings["TIKTOK_PIXEL_CODE"], f"chk-{uuid.uuid4().hex}"
    flaky = FlakyCollect(demo_collect)
    try:
        flaky.failures = 1
        init = {
            "customerPrivacy": {"marketingAllowed": True, "saleOfDataAllowed": True},
            "data": {"shop": {"myshopifyDomain": SHOP}, "customer": None, "cart": None},
            "context": {"document": {"location": {"href": f"https://{SHOP}/"}}},
        }
        open_sandbox(browser, demo_site, init, flaky.url, pixel, stack.settings["COLLECT_KEYS"].split(",")[0])
        checkout = {"token": token, "totalPrice": {"amount": 5, "currencyCode": "USD"}}
        started = {"id": f"sh-{uuid.uuid4()}", "name": "checkout_started", "timestamp": "2026-11-24T10:00:00Z",
                   "data": {"checkout": checkout}}  # fmt: skip
        browser.execute_script("publish('checkout_started', arguments[0])", started)
        context = wait_until(
            lambda: stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CHECKOUT, token)]), timeout=15
        )
        assert context["consent"]["marketing_allowed"] is True
        assert len(flaky.received) == 2 and [status for _, status in flaky.forwarded] == [200]
    finally:
        flaky.close()

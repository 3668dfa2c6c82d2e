"""collect.js in a real headless Chromium, end to end through the local stack.

The demo page (snippets/demo/index.html) carries a stand-in ``ttq`` that records
``ttq.track`` calls, so each test reads the event_id the page gave TikTok's pixel
and follows it to Firestore and to the sandbox (the stack's fake TikTok).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.receive.orders import JOIN_SHOPIFY_CART, JOIN_WOO_SESSION
from tests.helpers import sandbox_events, wait_for_sandbox_events, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def cookie(browser: Any, name: str) -> str | None:
    found = browser.get_cookie(name)
    return found["value"] if found else None


def click(browser: Any, element_id: str) -> None:
    browser.find_element("id", element_id).click()


def add_to_cart(browser: Any) -> str:
    """Click "Add to cart"; the event_id the page passed to ttq.track."""
    before = browser.execute_script("return window.ttq.calls.length")
    click(browser, "add-to-cart")
    name, properties, options = wait_until(
        lambda: browser.execute_script(
            "return window.ttq.calls.length > arguments[0] && window.ttq.calls.at(-1)", before
        )
    )
    assert (name, properties["value"]) == ("AddToCart", 25)
    return options["event_id"]


def sent(browser: Any) -> list[dict]:
    return browser.execute_script("return window.sent")


# The shape of a real ``_ttp`` (TikTok's pixel's first-party cookie): 27 base62 characters (a KSUID), sometimes
# with ``.tt.<n>``; collect drops other shapes (shared/domain/shapes.py). The demo page's stand-in writes a random
# one; a test that follows _ttp to TikTok sets a known value of that shape.
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def realistic_ttp(browser: Any) -> str:
    """Make the page's stand-in pixel write a real-looking ``_ttp`` on the grant; that value."""
    number = uuid.uuid4().int
    value = "2" + "".join(BASE62[(number >> (6 * i)) % 62] for i in range(26)) + ".tt.1"
    browser.execute_script(
        "var v = arguments[0]; window.ttq.grantConsent = function () {"
        " if (document.cookie.indexOf('_ttp=') < 0) document.cookie = '_ttp=' + v + '; Path=/; SameSite=Lax'; };",
        value,
    )
    return value


def test_with_consent_the_click_is_kept_in_a_cookie_and_add_to_cart_reaches_tiktok_with_the_same_event_id(
    browser, demo_site, demo_collect, stack, stack_store
):
    pixel, click_id = stack.settings["TIKTOK_PIXEL_CODE"], f"E.C.P.{uuid.uuid4().hex}"
    browser.get(demo_site.page(endpoint=demo_collect, pixel=pixel, platform="woocommerce", ttclid=click_id))
    assert cookie(browser, "ttclid") is None  # nothing is written before consent

    ttp = realistic_ttp(browser)
    click(browser, "grant")
    assert cookie(browser, "ttclid") == click_id and cookie(browser, "_ttp") == ttp
    session = cookie(browser, "tt_session")
    assert session and len(session) == 32
    assert cookie(browser, "tt_consent") == "granted"  # what the WooCommerce checkout snippet records

    event_id = add_to_cart(browser)
    [event] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)
    assert event["event"] == "AddToCart" and event["event_source_id"] == pixel
    assert event["user"]["ttclid"] == click_id
    assert event["user"]["ttp"] == ttp
    assert event["user"]["user_agent"].endswith("Chrome/150.0.0.0 Safari/537.36")
    assert event["properties"]["contents"][0]["content_id"] == "SKU-BLUE-SHIRT"
    assert [s["transport"] for s in sent(browser)] == ["beacon", "beacon"]  # the consent sync, then the event

    context = stack_store.find_click_context(pixel, [(JOIN_WOO_SESSION, session)])
    assert context["ttclid"] == click_id and context["consent"]["granted"] is True
    assert context["page_url"].startswith(demo_site.origin)

    # A later page (think: checkout) no longer has ?ttclid= but still sends the click from the cookie.
    browser.get(demo_site.page(endpoint=demo_collect, pixel=pixel, platform="woocommerce"))
    browser.execute_script("ttCollect.consent(true)")
    later = add_to_cart(browser)
    [event] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=later)
    assert event["user"]["ttclid"] == click_id and later != event_id


def test_with_consent_denied_nothing_is_sent_and_only_the_no_is_stored(
    browser, demo_site, demo_collect, stack, stack_store
):
    pixel, token = stack.settings["TIKTOK_PIXEL_CODE"], f"cart-{uuid.uuid4().hex}"
    page = demo_site.page(endpoint=demo_collect, pixel=pixel, transport="fetch", cart=token,
                          ttclid=f"E.C.P.{uuid.uuid4().hex}")  # fmt: skip
    browser.get(page)
    click(browser, "deny")
    withheld = add_to_cart(browser)
    # fetch (not sendBeacon) lets the page see collect's answers: the context syncs (on landing, on the
    # refusal) and the event, every one refused.
    answers = wait_until(lambda: len(sent(browser)) == 3 and sent(browser))
    assert {s["status"] for s in answers} == {204} and sorted(s["events"] for s in answers) == [0, 0, 1]
    assert cookie(browser, "ttclid") is None and cookie(browser, "_ttp") is None
    # The denial is remembered, alone (docs/collect.md, Consent: "A 'no' is remembered"): its answer and time,
    # nothing of the shopper: no click id, cookie, URL, user agent or identifier.
    denied = stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CART, token)])
    assert denied["consent"]["granted"] is False
    assert not {"ttclid", "ttp", "page_url", "ip", "user_agent", "locale", "user", "customer_key"} & set(denied)

    # Barrier: the same page, now consenting, sends through the same path; once that arrives, the
    # withheld event would have too.
    browser.execute_script("answer(true)")
    barrier = add_to_cart(browser)
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=barrier)
    assert sandbox_events(stack.url("sandbox"), event_id=withheld) == []
    assert stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CART, token)])["consent"]["granted"] is True


def test_google_consent_mode_from_the_data_layer_is_honoured(browser, demo_site, demo_collect, stack, stack_store):
    pixel, token = stack.settings["TIKTOK_PIXEL_CODE"], f"cart-{uuid.uuid4().hex}"
    browser.get(demo_site.page(endpoint=demo_collect, pixel=pixel, consent="gtag", transport="fetch", cart=token))
    denied = add_to_cart(browser)  # the page's default: ad_storage denied
    answers = wait_until(lambda: any(s["events"] == 1 for s in sent(browser)) and sent(browser))
    assert {s["status"] for s in answers} == {204}
    click(browser, "grant")  # gtag('consent', 'update', {... 'granted'})
    granted = add_to_cart(browser)
    [event] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=granted)
    assert event["event"] == "AddToCart"
    assert sandbox_events(stack.url("sandbox"), event_id=denied) == []
    context = stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CART, token)])
    assert context["consent"]["ad_storage"] == context["consent"]["ad_user_data"] == "granted"


def test_a_signed_customer_id_becomes_a_join_key_and_an_unsigned_one_does_not(
    browser, demo_site, demo_collect, stack, stack_store
):
    from shared.receive.collect.keys import sign_customer_id
    from shared.receive.orders import JOIN_CUSTOMER
    from tests.browser.conftest import BROWSER_SIGNING_SECRET

    pixel = stack.settings["TIKTOK_PIXEL_CODE"]
    signed, unsigned = str(uuid.uuid4().int % 10**6), str(uuid.uuid4().int % 10**6)
    signature = sign_customer_id(signed, BROWSER_SIGNING_SECRET)
    browser.get(demo_site.page(endpoint=demo_collect, pixel=pixel, platform="woocommerce", transport="fetch",
                               customer=signed, signature=signature, ttclid=f"E.C.P.{signed}"))  # fmt: skip
    click(browser, "grant")
    context = wait_until(lambda: stack_store.find_click_context(pixel, [(JOIN_CUSTOMER, signed)]))
    assert context["ttclid"] == f"E.C.P.{signed}" and context["consent"]["granted"] is True

    # The same page without the server's signature (what a third party can send): no context under the id.
    browser.get(demo_site.page(endpoint=demo_collect, pixel=pixel, platform="woocommerce", transport="fetch",
                               customer=unsigned, ttclid=f"E.C.P.{unsigned}"))  # fmt: skip
    browser.execute_script("ttCollect.consent(true)")
    event_id = add_to_cart(browser)
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)  # accepted, events and all
    assert stack_store.find_click_context(pixel, [(JOIN_CUSTOMER, unsigned)]) is None

"""Browser purchases are not a back door, order ids are read as a person reads them, free text stays home.

A browser Purchase refused, look-alike order ids, and free text kept home, on the pure plan
(shared/receive/collect/plan.py) and the pixel settings (shared/config.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.config import CollectSettings, ConfigError, PixelConfig
from shared.domain.consent import decide
from shared.domain.events import id_skeleton, is_order_event_id
from shared.domain.models import Properties
from shared.receive.collect.plan import ORDER_EVENT_REASON, PURCHASE_REASON, Plan, build_plan, scrub_properties
from shared.receive.collect.request import Refused
from shared.receive.collect.schema import parse_body

PIXEL = "CTESTPIXEL01"
CART = "c1-7a2abe0f9c1d4e6b8a3f5c7d9e1b2a4c"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
VIEW = {"event": "ViewContent", "event_id": "view-1", "properties": {"currency": "USD", "value": 25}}
FORGED = {"event": "Purchase", "event_id": "forged-1", "properties": {"currency": "USD", "value": 9.99e14}}


def plan(events: list[dict[str, Any]], **pixel: Any) -> Plan:
    document = {
        "pixel_code": PIXEL,
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"},
        "context": {"ttclid": "E.C.P.click", "join_keys": {"shopify_cart_token": CART}},
        "events": events,
    }
    parsed = parse_body(json.dumps(document).encode(), 20)
    config = PixelConfig(pixel_code=PIXEL, **pixel)
    return build_plan(parsed, config, decide(parsed.consent_snapshot(), "opt-in"), ip="203.0.113.24",
                      user_agent=CHROME, received=1_780_000_000)  # fmt: skip


def published(p: Plan) -> list[tuple[str, str]]:
    return [(e.event, e.event_id) for e in p.envelopes]


# --- purchase-type events ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Purchase", "CompletePayment", "completepayment", "PlaceAnOrder", "placeanorder"])
def test_purchase_type_events_are_refused_by_default_while_the_rest_of_the_request_goes(name):
    p = plan([{**FORGED, "event": name}, VIEW])
    assert published(p) == [("ViewContent", "view-1")]
    assert p.skipped == [{"event_id": "forged-1", "reason": PURCHASE_REASON}]
    assert p.skipped_counts == {"purchase": 1}
    assert "order webhooks" in PURCHASE_REASON and "browser_purchases" in PURCHASE_REASON


def test_a_purchase_without_any_value_is_refused_by_default_too():
    p = plan([{"event": "Purchase", "event_id": "p-1"}])
    assert p.envelopes == [] and p.skipped == [{"event_id": "p-1", "reason": PURCHASE_REASON}]


def test_a_pixel_that_allows_browser_purchases_sends_them_up_to_its_maximum_value():
    events = [
        {"event": "Purchase", "event_id": "p-ok", "properties": {"currency": "USD", "value": 120}},
        {"event": "CompletePayment", "event_id": "p-edge", "properties": {"currency": "USD", "value": 500}},
        {"event": "PlaceAnOrder", "event_id": "p-novalue"},
        VIEW,
    ]
    p = plan(events, browser_purchases=True, browser_purchase_max_value=500)
    assert published(p) == [("Purchase", "p-ok"), ("Purchase", "p-edge"), ("PlaceAnOrder", "p-novalue"),
                            ("ViewContent", "view-1")]  # fmt: skip
    assert p.skipped == [] and p.skipped_counts == {}
    assert p.envelopes[0].properties.value == 120 and p.envelopes[0].source == "collect"


@pytest.mark.parametrize(
    "properties",
    [
        {"currency": "USD", "value": 9.99e14},  # the value that reached the sandbox
        {"currency": "USD", "value": 500.01},
        {"currency": "USD", "value": -20},  # a refund in disguise lowers the advertiser's revenue
        # No value, or a small one, but contents TikTok could add up to a large one.
        {"currency": "USD", "contents": [{"content_id": "1", "price": 400, "quantity": 2}]},
        {"currency": "USD", "value": 1, "contents": [{"content_id": "1", "price": 9e13, "quantity": 1}]},
    ],
)
def test_a_browser_purchase_over_the_pixels_maximum_is_skipped_with_its_reason(properties):
    p = plan([{"event": "Purchase", "event_id": "big", "properties": properties}, VIEW],
             browser_purchases=True, browser_purchase_max_value=500)  # fmt: skip
    assert published(p) == [("ViewContent", "view-1")]
    [skipped] = p.skipped
    assert skipped["event_id"] == "big" and "browser_purchase_max_value (500)" in skipped["reason"]
    assert p.skipped_counts == {"purchase": 1}


def test_the_maximum_only_bounds_purchases():
    p = plan([{"event": "AddToCart", "event_id": "a-1", "properties": {"currency": "USD", "value": 900}}],
             browser_purchases=True, browser_purchase_max_value=500)  # fmt: skip
    assert published(p) == [("AddToCart", "a-1")]


def test_order_ids_stay_the_webhooks_even_where_browser_purchases_are_allowed():
    order = "shopify:shop.myshopify.com:order:820982911946154508:Purchase"
    p = plan([{"event": "Purchase", "event_id": order, "properties": {"value": 10}}],
             browser_purchases=True, browser_purchase_max_value=500)  # fmt: skip
    assert p.envelopes == [] and p.skipped == [{"event_id": order, "reason": ORDER_EVENT_REASON}]
    assert p.skipped_counts == {"order_event": 1}


# --- pixel settings ----------------------------------------------------------------------------------


def test_browser_purchases_are_off_unless_a_pixel_says_so():
    pixel = PixelConfig(pixel_code=PIXEL)
    assert pixel.browser_purchases is False and pixel.browser_purchase_max_value is None


def test_allowing_browser_purchases_needs_a_maximum_value_named_with_its_fix():
    tenants = json.dumps({"pixels": {PIXEL: {"pixel_code": PIXEL, "browser_purchases": True}}})
    with pytest.raises(ConfigError) as refused:
        CollectSettings.from_env({"PIPELINE_TENANTS": tenants}).tenants()
    message = str(refused.value)
    assert message.startswith("PIPELINE_TENANTS: pixels.CTESTPIXEL01") and "browser_purchase_max_value" in message
    assert "Fix:" in message and "\n" not in message


@pytest.mark.parametrize("bad", [0, -1, 1e16, "lots"])
def test_a_maximum_value_that_is_not_a_positive_amount_is_refused(bad):
    pixel = {"pixel_code": PIXEL, "browser_purchases": True, "browser_purchase_max_value": bad}
    with pytest.raises(ConfigError, match=r"^PIPELINE_TENANTS: pixels\.CTESTPIXEL01\.browser_purchase_max_value"):
        CollectSettings.from_env({"PIPELINE_TENANTS": json.dumps({"pixels": {PIXEL: pixel}})}).tenants()


def test_the_single_tenant_variables_set_the_default_pixel():
    env = {"TIKTOK_PIXEL_CODE": PIXEL, "COLLECT_BROWSER_PURCHASES": "true"}
    with pytest.raises(ConfigError, match="^COLLECT_BROWSER_PURCHASE_MAX_VALUE is not set .* Fix: "):
        CollectSettings.from_env(env).tenants()
    pixel = CollectSettings.from_env({**env, "COLLECT_BROWSER_PURCHASE_MAX_VALUE": "750"}).tenants().pixel(PIXEL)
    assert (pixel.browser_purchases, pixel.browser_purchase_max_value) == (True, 750)
    default = CollectSettings.from_env({"TIKTOK_PIXEL_CODE": PIXEL}).tenants().pixel(PIXEL)
    assert default.browser_purchases is False
    with pytest.raises(ConfigError, match="COLLECT_BROWSER_PURCHASE_MAX_VALUE"):
        CollectSettings.from_env({**env, "COLLECT_BROWSER_PURCHASE_MAX_VALUE": "-5"})


# --- order ids after Unicode normalisation -----------------------------------------------------------

LOOK_ALIKES = {
    "upper case": "SHOPIFY:shop:order:1",
    "mixed case": "WooCommerce:site.example:Order:7:Purchase",
    "fullwidth colon": "shopify\uff1ashop.myshopify.com\uff1aorder\uff1a1:Purchase",
    "fullwidth letters": "\uff53\uff48\uff4f\uff50\uff49\uff46\uff59:shop:order:1",
    "mathematical bold": "\U0001d42c\U0001d421\U0001d428\U0001d429\U0001d422\U0001d41f\U0001d432:shop:order:1",
    "small form colon": "woocommerce\ufe55site\ufe55order\ufe551",
    "accented": "sh\u00f3pify:shop:order:1",
    "combining mark": "sho\u0301pify:shop:order:1",
    "ideographic space inside": "shopify:shop:\u3000order:1",
}
INVISIBLE = {
    "zero-width space": "shop\u200bify:shop:order:1",
    "zero-width non-joiner": "shopify:shop:ord\u200cer:1",
    "zero-width joiner": "\u200dshopify:shop:order:1",
    "word joiner": "shopify\u2060:shop:order:1",
    "byte order mark": "\ufeffwoocommerce:site:order:1",
    "soft hyphen": "shop\u00adify:shop:order:1",
    "bidi override": "\u202eshopify:shop:order:1",
}


@pytest.mark.parametrize("event_id", [*LOOK_ALIKES.values(), *INVISIBLE.values()], ids=[*LOOK_ALIKES, *INVISIBLE])
def test_a_look_alike_of_an_order_id_reads_as_one(event_id):
    assert is_order_event_id(event_id)
    assert id_skeleton(event_id).startswith(("shopify:", "woocommerce:"))


@pytest.mark.parametrize(
    "event_id",
    ["0b9d3c1e-8f4a-4c1e-9d2b-7a6e5f4c3b2a", "evt-1", "sh-88ee3b1c", "shopify-theme:view:1", "order:shopify:1",
     "shopify:shop:orders:1", "checkout-abc:InitiateCheckout"],
)  # fmt: skip
def test_ordinary_browser_ids_are_not_order_ids(event_id):
    assert not is_order_event_id(event_id)


@pytest.mark.parametrize("event_id", LOOK_ALIKES.values(), ids=LOOK_ALIKES)
@pytest.mark.parametrize("name", ["Purchase", "InitiateCheckout", "ViewContent"])
def test_look_alike_order_ids_are_skipped_like_real_ones(event_id, name):
    p = plan([{"event": name, "event_id": event_id}, VIEW], browser_purchases=True, browser_purchase_max_value=500)
    assert published(p) == [("ViewContent", "view-1")]
    assert p.skipped == [{"event_id": event_id, "reason": ORDER_EVENT_REASON}]


@pytest.mark.parametrize("event_id", INVISIBLE.values(), ids=INVISIBLE)
def test_an_event_id_with_invisible_characters_is_refused_by_name(event_id):
    """No page's id holds them; they hide look-alikes and reorder log lines and Events Manager rows."""
    document = {"pixel_code": PIXEL, "events": [{"event": "ViewContent", "event_id": event_id}]}
    with pytest.raises(Refused) as refused:
        parse_body(json.dumps(document).encode(), 20)
    assert refused.value.status == 400
    assert refused.value.fields == [{"field": "events[0].event_id",
                                     "problem": "must be printable text without invisible characters "
                                                "(the id given to ttq.track)"}]  # fmt: skip


@pytest.mark.parametrize("character", ["\x7f", "\x85", "\u2028", "\u2029", "\x1b"])
def test_an_event_id_with_a_control_or_line_separator_is_refused(character):
    document = {"pixel_code": PIXEL, "events": [{"event": "ViewContent", "event_id": f"evt{character}1"}]}
    with pytest.raises(Refused):
        parse_body(json.dumps(document).encode(), 20)


# --- free-text properties ----------------------------------------------------------------------------


def test_custom_text_is_dropped_and_only_numbers_and_booleans_are_forwarded():
    properties = Properties.model_validate({
        "currency": "USD", "value": 25, "query": "red shoes for jane@example.com", "description": "gift for Jane Doe",
        "contents": [{"content_id": "4242", "content_name": "Blue shirt, call +1 213 373 4253", "brand": "Acme"}],
        "note": "Jane Doe, 1 Elm Street", "sizes": ["M"], "extra": {"a": 1}, "step": 2, "member": True,
        "loyalty_points": 2133734253, "customer_email": "jane@example.com", "ratio": 0.5, "nothing": None,
    })  # fmt: skip
    scrubbed, personal, text = scrub_properties(properties)
    assert personal == ["customer_email", "loyalty_points"]  # a name saying so; a number written like a phone
    assert text == ["description", "extra", "note", "sizes"]
    data = scrubbed.model_dump(exclude_none=True)
    assert data == {
        "currency": "USD", "value": 25.0, "query": "red shoes for [redacted]",
        "contents": [{"content_id": "4242", "content_name": "Blue shirt, call [redacted]", "brand": "Acme"}],
        "step": 2, "member": True, "ratio": 0.5,
    }  # fmt: skip


def test_the_answer_names_the_free_text_that_was_not_forwarded():
    event = {"event": "Search", "event_id": "s-1", "properties": {"query": "shoes", "note": "x", "description": "d"}}
    p = plan([event])
    assert published(p) == [("Search", "s-1")]
    assert p.skipped == [{"event_id": "s-1", "reason": "free text not forwarded: description, note"}]
    assert p.envelopes[0].properties.model_dump(exclude_none=True) == {"contents": [], "query": "shoes"}

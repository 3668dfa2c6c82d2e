"""A currency code is upper-cased wherever it enters (collect and both order webhooks); a word that is no code is
refused naming the field.
"""

from __future__ import annotations

from shared.receive.collect.handler import handle
from shared.receive.woocommerce import mapping as woo_mapping
from shared.receive.woocommerce.settings import WooCommerceSiteConfig
from tests.emulator.test_woocommerce_webhook import SITE_URL
from tests.unit import test_collect as tc
from tests.unit.test_shopify_mapping import documented_order as shopify_order
from tests.unit.test_shopify_mapping import plan as shopify_plan
from tests.unit.test_shopify_mapping import shop_config
from tests.unit.test_woocommerce import documented_order as woo_order

NOW = 1_790_000_000


def test_a_lowercase_currency_in_collect_is_normalised_and_the_request_keeps_its_click_context():
    recorder = tc.Recorder()
    event = {"event": "AddToCart", "event_id": "evt-usd", "properties": {"currency": " usd ", "value": 9.5}}
    reply = handle(tc.post(tc.body(events=[event])), tc.runtime(recorder))
    assert (reply.status, reply.outcome.kind) == (200, "accepted")
    assert recorder.published[0].properties.currency == "USD"
    assert recorder.contexts and recorder.contexts[0][2]["ttclid"] == "E.C.P.click"


def test_a_currency_that_is_no_code_in_any_case_is_still_refused_naming_the_field():
    event = {"event": "AddToCart", "event_id": "evt-x", "properties": {"currency": "dollars"}}
    reply = handle(tc.post(tc.body(events=[event])), tc.runtime())
    assert reply.status == 400 and "events[0].properties.currency" in reply.body["reason"]


def test_the_order_webhooks_already_upper_case_a_lowercase_currency():
    order = shopify_order(currency="usd", total_price="10.00", total_price_set=None)
    assert shopify_plan(order, shop=shop_config(currency="shop")).order.properties["currency"] == "USD"
    site = WooCommerceSiteConfig(url=SITE_URL, pixel_code="CPIXEL")
    assert woo_mapping.map_order(woo_order(currency="eur"), site, NOW).properties["currency"] == "EUR"

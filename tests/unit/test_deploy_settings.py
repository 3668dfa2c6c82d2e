"""Settings a merchant flips to verify a deployment reach the functions as plain variables."""

from __future__ import annotations

from shared.receive.shopify.settings import ShopifySettings

BASE = {"TIKTOK_PIXEL_CODE": "C1", "SHOPIFY_SHOP_DOMAIN": "a.myshopify.com", "SHOPIFY_WEBHOOK_SECRET": "s"}


def test_shopify_test_orders_are_skipped_unless_the_plain_variable_turns_them_on():
    off = ShopifySettings.from_env(BASE)
    assert off.shops(off.tenants())["a.myshopify.com"].include_test_orders is False
    on = ShopifySettings.from_env({**BASE, "SHOPIFY_INCLUDE_TEST_ORDERS": "true"})
    assert on.shops(on.tenants())["a.myshopify.com"].include_test_orders is True

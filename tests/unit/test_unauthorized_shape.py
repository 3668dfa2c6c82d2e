"""Every refusal of a webhook's signature or origin has one body shape: an error and a reason."""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.config import Tenants
from shared.receive import woocommerce
from shared.receive.shopify.handler import handle as handle_shopify
from shared.receive.shopify.request import Delivery as ShopifyDelivery
from shared.receive.shopify.runtime import Runtime as ShopifyRuntime
from shared.receive.woocommerce.settings import WooCommerceSiteConfig
from tests.emulator.test_woocommerce_webhook import SITE, SITE_URL
from tests.helpers import ROOT, shopify_signature
from tests.unit.test_shopify_mapping import shop_config


def _shape(body: dict[str, Any]) -> tuple[str, bool]:
    return body.get("error", ""), set(body) == {"error", "reason"} and bool(body["reason"])


def test_woocommerce_and_shopify_answer_401_with_the_same_shape():
    site = WooCommerceSiteConfig(url=SITE_URL, pixel_code="CPIXEL", secrets=["s3cret"])
    tenants = Tenants(pixels={"CPIXEL": {"pixel_code": "CPIXEL"}})
    woo_runtime = woocommerce.Runtime(tenants, {SITE: site})
    body = b'{"id": 1}'
    headers = {"X-WC-Webhook-Source": SITE_URL, "X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Signature": "x"}
    woo_reply = woocommerce.handle(headers, body, lambda: woo_runtime)
    unknown = woocommerce.handle({**headers, "X-WC-Webhook-Source": "https://other.example"}, body, lambda: woo_runtime)

    shop = shop_config(secrets=["s3cret"])
    shop_tenants = Tenants(pixels={"CPIXEL": {"pixel_code": "CPIXEL"}})
    delivery = ShopifyDelivery.from_headers({"X-Shopify-Shop-Domain": shop.domain, "X-Shopify-Topic": "orders/paid",
                                             "X-Shopify-Hmac-Sha256": shopify_signature(body, "wrong")})  # fmt: skip
    shopify_reply = handle_shopify(delivery, body, ShopifyRuntime(shop_tenants, {shop.domain: shop}))
    assert [r.status for r in (woo_reply, unknown, shopify_reply)] == [401] * 3
    assert {_shape(r.body) for r in (woo_reply, unknown, shopify_reply)} == {("unauthorized", True)}


def test_the_shopify_pubsub_entry_points_refusals_have_the_error_and_reason_shape(monkeypatch):
    for name, value in {"TIKTOK_PIXEL_CODE": "CPIXEL", "SHOPIFY_SHOP_DOMAIN": "a.myshopify.com",
                        "SHOPIFY_WEBHOOK_SECRET": "s"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    source = str(ROOT / "functions" / "shopify_webhook" / "main.py")
    client = functions_framework.create_app(target="shopify_pubsub", source=source).test_client()
    response = client.post("/", data=b"[1]", content_type="application/json")
    assert 400 <= response.status_code < 500
    assert set(response.get_json()) == {"error", "reason"}

"""Shopify: order webhooks (``shared.receive.shopify``) joined by the cart and checkout tokens."""

from __future__ import annotations

from shared.sources import TOKEN, JoinKind, LocalRun, Shape, SourceDefinition

# Shopify: 32 hex (classic), "c1-" + 32 hex, or a long base64 id (cart.js `token`, without ?key=).
CART = JoinKind(
    "shopify_cart_token",
    "shopify_cart_token",
    Shape(TOKEN, 20, 8, "a Shopify cart token (cart.js token: 20 or more letters, digits, - or _)"),
    strip_query=True,  # the order's cart_token has no ?key=
)
CHECKOUT = JoinKind(
    "shopify_checkout_token",
    "shopify_checkout_token",
    Shape(TOKEN, 20, 8, "a Shopify checkout token (20 or more letters, digits, - or _)"),
    specificity=1,  # one checkout of the cart
)

SOURCE = SourceDefinition(
    "shopify",
    "Shopify",
    join_kinds=(CART, CHECKOUT),
    order_events=True,
    function="shopify_webhook",
    settings="shared.receive.shopify.settings:ShopifySettings",
    tenants_key="shopify_shops",
    orders="shared.reconcile.shopify:CHANNEL",
    local=LocalRun(
        "SHOPIFY_WEBHOOK_PORT",
        8081,
        settings=(
            ("SHOPIFY_SHOP_DOMAIN", "local-shop.myshopify.com"),
            ("SHOPIFY_WEBHOOK_SECRET", "local-shopify-secret"),
        ),
        secrets=("SHOPIFY_WEBHOOK_SECRET",),
    ),
)

"""WooCommerce: order webhooks (``shared.receive.woocommerce``) joined by the order key and the session."""

from __future__ import annotations

import re

from shared.sources import TOKEN, JoinKind, LocalRun, Shape, SourceDefinition

# "wc_order_" + 13 random letters and digits (wc_generate_order_key).
ORDER_KEY = JoinKind(
    "woocommerce_order_key",
    "woocommerce_order_key",
    Shape(re.compile(r"^wc_order_[A-Za-z0-9]{12,}$"), 21, 10, "a WooCommerce order key (wc_order_...)"),
)
# collect.js: 32 random hex characters in the tt_session cookie, which the plugin copies into the order's meta.
SESSION = JoinKind(
    "woocommerce_session",
    "woocommerce_session",
    Shape(TOKEN, 32, 8, "a random session id (collect.js tt_session: 32 hex characters)"),
)

SOURCE = SourceDefinition(
    "woocommerce",
    "WooCommerce",
    join_kinds=(ORDER_KEY, SESSION),
    order_events=True,
    function="woocommerce_webhook",
    settings="shared.receive.woocommerce.settings:WooCommerceSettings",
    tenants_key="woocommerce_sites",
    orders="shared.reconcile.woocommerce:CHANNEL",
    local=LocalRun(
        "WOOCOMMERCE_WEBHOOK_PORT",
        8082,
        settings=(
            ("WOOCOMMERCE_SITE_URL", "https://woo.local.test"),
            ("WOOCOMMERCE_WEBHOOK_SECRET", "local-woocommerce-secret"),
        ),  # fmt: skip
        secrets=("WOOCOMMERCE_WEBHOOK_SECRET",),
    ),
)

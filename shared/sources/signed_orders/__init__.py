"""Signed orders from any backend: headless shops and custom checkouts post their orders, signed.

The whole source is this folder: its definition (here, pure data for the registry),
its settings and tenant entry (:mod:`.settings`), the signature (:mod:`.signature`),
the documented order schema and its mapping (:mod:`.schema`), the replay claim and the
shared order flow (:mod:`.flow`), the instance's clients (:mod:`.runtime`) and the
request to its answer (:mod:`.handler`). ``functions/signed_orders/main.py`` names it; docs/signed-orders.md
is the contract a backend developer reads.
"""

from __future__ import annotations

from shared.sources import TOKEN, JoinKind, LocalRun, Shape, SourceDefinition

# The checkout id the site generates and gives both to collect.js (joinKeys) and to the order it posts.
CHECKOUT = JoinKind(
    "signed_orders_checkout",
    "signed_orders_checkout",
    Shape(TOKEN, 20, 8, "a checkout id your site generated (20 or more random letters, digits, - or _)"),
)

SOURCE = SourceDefinition(
    "signed_orders",
    "Signed orders (any backend)",
    join_kinds=(CHECKOUT,),
    order_events=True,
    function="signed_orders",
    settings="shared.sources.signed_orders.settings:SignedOrdersSettings",
    tenants_key="signed_order_sites",
    local=LocalRun(
        "SIGNED_ORDERS_PORT",
        8087,
        settings=(("SIGNED_ORDERS_SITE", "shop.local.test"), ("SIGNED_ORDERS_SECRET", "local-signed-orders-secret")),
        secrets=("SIGNED_ORDERS_SECRET",),
    ),
)

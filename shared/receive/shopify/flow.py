"""Carrying a routed action out: the order flow, bounded per delivery.

The only module of the package with side effects on our data: the order event
through the shared order flow, cancellations and refunds recorded, privacy
deletions. Every call of a delivery shares its :class:`Deadline` (the
:class:`~.runtime.Runtime`'s bounded store and publisher), so a slow dependency is a 503 in time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from shared.config import Tenants
from shared.domain.events import order_event_id
from shared.domain.hashing import customer_key
from shared.infra.deadline import Deadline
from shared.infra.store import CLICK_CONTEXTS, EVENT_CLAIMS, ORDER_EVENTS, WEBHOOK_DELIVERIES
from shared.outcome import Kind, Outcome
from shared.receive.orders import ORDER_EVENT_TTL, block_purchase, process_order_event
from shared.receive.shopify.request import PLATFORM
from shared.receive.shopify.routing import Action, RecordOrderChange, RedactCustomer, SendEvent
from shared.receive.shopify.runtime import Runtime, ShopifyStore
from shared.receive.shopify.settings import ShopifyShopConfig
from shared.sources.shopify import SOURCE


class DeliveryStore:
    """The store as one delivery sees it (bounded: :meth:`Runtime.bounded_store`), every claim tagged.

    The tags (``shop``, ``order_ref``) go on each claim so that the privacy
    webhooks can find what an order left behind (:func:`_redact_customer`).
    """

    def __init__(self, bounded: ShopifyStore, **tags: Any) -> None:
        self._bounded = bounded
        self._tags = tags

    def tagged(self, **tags: Any) -> DeliveryStore:
        """The same store and deadline, writing ``tags`` on every claim too."""
        view = DeliveryStore.__new__(DeliveryStore)
        view._bounded, view._tags = self._bounded, {**self._tags, **tags}
        return view

    def claim_once(self, collection: str, key: Sequence[object], ttl: dt.timedelta, **fields: Any) -> bool:
        return self._bounded.claim_once(collection, key, ttl, **{**fields, **self._tags})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bounded, name)


def order_ref(shop_domain: str, order_id: str) -> str:
    return f"{PLATFORM}:{shop_domain}:{order_id}"


def execute(action: Action, *, shop: ShopifyShopConfig, runtime: Runtime, deadline: Deadline) -> Outcome:
    """Carry out ``action`` within ``deadline``; raises when Firestore or Pub/Sub fail (the caller answers 503)."""
    if isinstance(action, Outcome):
        return action
    # Both clients are made on first use, whatever the action: a client that cannot be made is a 503 too.
    store = DeliveryStore(runtime.bounded_store(deadline))
    publisher = runtime.bounded_publisher(deadline)
    if isinstance(action, SendEvent):
        order = action.order
        return process_order_event(
            order,
            pixel=runtime.tenants.pixels[shop.pixel_code],
            policy=runtime.tenants.policy_for(shop.pixel_code, shop.consent_policy),
            store=store.tagged(shop=shop.domain, order_ref=order_ref(shop.domain, order.order_id)),
            publisher=publisher,
            default_region=runtime.default_region,
            max_event_age=runtime.max_event_age,
        )
    if isinstance(action, RecordOrderChange):
        return _record(action, shop, store)
    if isinstance(action, RedactCustomer):
        return _redact_customer(action, shop, store)
    return _redact_shop(shop, store, runtime.tenants)


def _record(action: RecordOrderChange, shop: ShopifyShopConfig, store: DeliveryStore) -> Outcome:
    ref = order_ref(shop.domain, action.order_id)
    purchase_id = order_event_id(PLATFORM, shop.domain, action.order_id, "Purchase")
    details: dict[str, Any] = {"order_id": action.order_id, "record": action.record}
    if action.blocks_purchase:
        details["purchase_blocked"] = block_purchase(
            store, shop.pixel_code, purchase_id, source=PLATFORM, shop=shop.domain, order_ref=ref
        )
    fields = {k: v for k, v in action.fields.items() if v is not None}
    key = (PLATFORM, shop.domain, action.order_id, action.record)
    if not store.claim_once(ORDER_EVENTS, key, ORDER_EVENT_TTL, shop=shop.domain, order_ref=ref, **fields):
        return Outcome(Kind.DUPLICATE, f"{action.record} already recorded", purchase_id, details)
    if action.blocks_purchase and details["purchase_blocked"]:
        reason = "order cancelled before any Purchase: recorded, and no Purchase will be sent for it"
    else:
        reason = f"{action.fields.get('kind', action.record)} recorded; TikTok has no such event, the Purchase stands"
    return Outcome(Kind.RECORDED, reason, purchase_id, details)


def _redact_customer(action: RedactCustomer, shop: ShopifyShopConfig, store: DeliveryStore) -> Outcome:
    contexts = 0
    if action.customer_id:
        # The collect endpoint writes customer_key on contexts it can tie to a customer.
        contexts = store.delete_where(CLICK_CONTEXTS, "customer_key", customer_key(action.customer_id))
    # Cancellations' tombstones on a Purchase live in event_claims (shared.receive.orders.block_purchase).
    records = sum(store.delete_where(collection, "order_ref", order_ref(shop.domain, o))
                  for o in action.order_ids for collection in (ORDER_EVENTS, EVENT_CLAIMS))  # fmt: skip
    details = {"click_contexts": contexts, "order_records": records}
    return Outcome(Kind.REDACTED, "customer data deleted", details=details)


def _redact_shop(shop: ShopifyShopConfig, store: DeliveryStore, tenants: Tenants) -> Outcome:
    details = {
        # Deliveries are no longer claimed, but databases deployed before hold such records until their TTL.
        "webhook_deliveries": store.delete_where(WEBHOOK_DELIVERIES, "shop", shop.domain),
        "order_records": store.delete_where(ORDER_EVENTS, "shop", shop.domain)
        + store.delete_where(EVENT_CLAIMS, "shop", shop.domain),
    }
    # Click contexts are stored per pixel; delete them only if no other shop or site (of any source) uses the pixel.
    sharing = [entry for entry in tenants.sharing_pixel(shop.pixel_code) if entry != (SOURCE.tenants_key, shop.domain)]
    if sharing:
        details["click_contexts_kept"] = f"pixel shared with {len(sharing)} other shop(s); they expire by TTL"
    else:
        details["click_contexts"] = store.delete_where(CLICK_CONTEXTS, "pixel_code", shop.pixel_code)
    return Outcome(Kind.REDACTED, "shop data deleted", details=details)

"""Carrying a planned action out: one instance's Firestore and Pub/Sub (:class:`Runtime`), bounded per delivery.

The only module of the package with side effects on our data: the order event
through the shared order flow, cancellations and refunds recorded, privacy
deletions. Every call of a delivery shares its :class:`Deadline`
(:class:`DeliveryStore`, ``BoundedProxy``), so a slow dependency is a 503 in time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol, TypeVar

from shared.config import DEFAULT_SHOPIFY_API_VERSION, ShopifySettings, ShopifyShopConfig, Tenants
from shared.domain.events import order_event_id
from shared.domain.hashing import customer_key
from shared.infra import log
from shared.infra.deadline import BoundedProxy, Deadline
from shared.infra.instance import PerInstance
from shared.infra.pubsub import Publisher, publisher_from_settings
from shared.infra.store import CLICK_CONTEXTS, EVENT_CLAIMS, ORDER_EVENTS, WEBHOOK_DELIVERIES, store_from_settings
from shared.outcome import Kind, Outcome
from shared.receive.orders import MAX_EVENT_AGE, ORDER_EVENT_TTL, OrderStore, block_purchase, process_order_event
from shared.receive.shopify.api_version import VersionWatch, check_support
from shared.receive.shopify.delivery import IO_SECONDS, MAX_BODY_BYTES, MAX_ORDER_AGE, PLATFORM
from shared.receive.shopify.plan import Action, RecordOrderChange, RedactCustomer, SendEvent

T = TypeVar("T")


class ShopifyStore(OrderStore, Protocol):
    """The store as the Shopify webhook uses it: the order flow's, and the privacy webhooks' deletions."""

    def delete_where(self, collection: str, field: str, value: Any, limit: int = 500) -> int: ...


class DeliveryStore:
    """The Store as one delivery sees it: every call within the delivery's deadline, every claim tagged.

    The tags (``shop``, ``order_ref``) go on each claim so that the privacy
    webhooks can find what an order left behind (:func:`_redact_customer`).
    """

    def __init__(self, store: ShopifyStore, deadline: Deadline, **tags: Any) -> None:
        self._bounded: ShopifyStore = BoundedProxy(store, "firestore", deadline)
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
    store = DeliveryStore(runtime.store, deadline)
    publisher: Publisher = BoundedProxy(runtime.publisher, "pubsub", deadline)
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
    # Click contexts are stored per pixel; delete them only if no other shop or site uses the pixel.
    sharing = [d for d, s in tenants.shopify_shops.items() if s.pixel_code == shop.pixel_code and d != shop.domain]
    sharing += [w for w, s in tenants.woocommerce_sites.items() if s.pixel_code == shop.pixel_code]
    if sharing:
        details["click_contexts_kept"] = f"pixel shared with {len(sharing)} other shop(s); they expire by TTL"
    else:
        details["click_contexts"] = store.delete_where(CLICK_CONTEXTS, "pixel_code", shop.pixel_code)
    return Outcome(Kind.REDACTED, "shop data deleted", details=details)


class Runtime:
    """One instance's dependencies: tenants now, Firestore and Pub/Sub clients on first use."""

    def __init__(
        self,
        tenants: Tenants,
        *,
        default_region: str | None = "US",
        store: ShopifyStore | None = None,
        publisher: Publisher | None = None,
        store_factory: Callable[[], ShopifyStore] | None = None,
        publisher_factory: Callable[[], Publisher] | None = None,
        io_seconds: float = IO_SECONDS,
        max_order_age: dt.timedelta = MAX_ORDER_AGE,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_event_age: dt.timedelta = MAX_EVENT_AGE,
        api_version: str = DEFAULT_SHOPIFY_API_VERSION,
    ) -> None:
        self.tenants = tenants
        # The configured Shopify API version, and the different ones deliveries carried (logged once each).
        self.api_versions = VersionWatch(api_version)
        self.default_region = default_region
        self.io_seconds = io_seconds
        self.max_order_age = max_order_age
        self.max_event_age = max_event_age
        self.max_body_bytes = max_body_bytes
        self._store = PerInstance(_first_use(store, store_factory, "store"))
        self._publisher = PerInstance(_first_use(publisher, publisher_factory, "publisher"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, today: dt.date | None = None) -> Runtime:
        """Raises :class:`shared.config.ConfigError` naming the variable that is wrong.

        Warns once when the configured Shopify API version is past its support window on ``today``
        (the date at run time unless given).
        """
        settings = ShopifySettings.from_env(environ)
        log.set_level(settings.log_level)
        check_support(settings.api_version, today or dt.datetime.now(dt.UTC).date())

        return cls(
            settings.tenants(),
            default_region=settings.default_phone_region,
            store_factory=lambda: store_from_settings(settings),
            publisher_factory=lambda: publisher_from_settings(settings),
            max_order_age=dt.timedelta(days=settings.max_order_age_days),
            max_body_bytes=settings.max_body_bytes,
            max_event_age=dt.timedelta(days=settings.max_event_age_days),
            api_version=settings.api_version,
        )

    @property
    def store(self) -> ShopifyStore:
        return self._store.get()

    @property
    def publisher(self) -> Publisher:
        return self._publisher.get()


def _first_use(value: T | None, factory: Callable[[], T] | None, name: str) -> Callable[[], T]:
    """What makes a Runtime's client: the one given, else its factory (clients made at first use)."""
    if value is not None:
        return lambda: value
    if factory is not None:
        return factory

    def missing() -> NoReturn:
        raise RuntimeError(f"the Runtime was given no {name} and no {name}_factory")

    return missing

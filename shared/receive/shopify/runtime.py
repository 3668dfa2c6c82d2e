"""What one instance of the Shopify webhook holds: its tenants and limits, Firestore and Pub/Sub made on first use.

A delivery's calls are bounded by one :class:`~shared.infra.deadline.Deadline` of
``io_seconds`` that they share (:meth:`Runtime.bounded_store`, :meth:`Runtime.bounded_publisher`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from shared.config import DEFAULT_SHOPIFY_API_VERSION, Tenants
from shared.infra import log
from shared.infra.instance import Clients, first_use
from shared.infra.pubsub import Publisher, publisher_from_settings
from shared.infra.store import store_from_settings
from shared.receive.orders import MAX_EVENT_AGE, OrderStore
from shared.receive.shopify.api_version import VersionWatch, check_support
from shared.receive.shopify.request import IO_SECONDS, MAX_BODY_BYTES, MAX_ORDER_AGE
from shared.receive.shopify.settings import ShopifySettings, ShopifyShopConfig


class ShopifyStore(OrderStore, Protocol):
    """The store as the Shopify webhook uses it: the order flow's, and the privacy webhooks' deletions."""

    def delete_where(self, collection: str, field: str, value: Any, limit: int = 500) -> int: ...


class Runtime(Clients[ShopifyStore, Publisher]):
    """One instance's dependencies: shops and tenants now, Firestore and Pub/Sub clients on first use."""

    def __init__(
        self,
        tenants: Tenants,
        shops: Mapping[str, ShopifyShopConfig],
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
        # Shop key -> the shop, validated with its secrets (ShopifySettings.shops).
        self.shops = dict(shops)
        # The configured Shopify API version, and the different ones deliveries carried (logged once each).
        self.api_versions = VersionWatch(api_version)
        self.default_region = default_region
        self.io_seconds = io_seconds
        self.max_order_age = max_order_age
        self.max_event_age = max_event_age
        self.max_body_bytes = max_body_bytes
        super().__init__(first_use(store, store_factory, "store"), first_use(publisher, publisher_factory, "publisher"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, today: dt.date | None = None) -> Runtime:
        """Raises :class:`shared.config.ConfigError` naming the variable that is wrong.

        Warns once when the configured Shopify API version is past its support window on ``today``
        (the date at run time unless given).
        """
        settings = ShopifySettings.from_env(environ)
        log.set_level(settings.log_level)
        check_support(settings.api_version, today or dt.datetime.now(dt.UTC).date())

        tenants = settings.tenants()
        return cls(
            tenants,
            settings.shops(tenants),
            default_region=settings.default_phone_region,
            store_factory=lambda: store_from_settings(settings),
            publisher_factory=lambda: publisher_from_settings(settings),
            max_order_age=dt.timedelta(days=settings.max_order_age_days),
            max_body_bytes=settings.max_body_bytes,
            max_event_age=dt.timedelta(days=settings.max_event_age_days),
            api_version=settings.api_version,
        )

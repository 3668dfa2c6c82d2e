"""What one instance of the WooCommerce webhook holds: its tenants, and Firestore and Pub/Sub made on first use.

Separate from the flow so that the replay tool builds the same dependencies
(without the site settings when it only has envelopes to publish), and so that
the time bounds on every Firestore and Pub/Sub call live next to the clients.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import cast

from shared import budgets
from shared.config import ConfigError, ConsentPolicy, PixelConfig, Tenants
from shared.domain.events import shop_key
from shared.infra import log
from shared.infra.deadline import Deadline
from shared.infra.instance import Clients
from shared.infra.pubsub import Publisher, publisher_from_settings
from shared.infra.store import store_from_settings
from shared.receive.orders import MAX_EVENT_AGE, OrderStore
from shared.receive.woocommerce.settings import WooCommerceSettings, WooCommerceSiteConfig

# Bounded waits: WooCommerce gives up after 60 s, the function's own timeout may be the same.
# Each call gets its dependency's whole budget (a delivery makes at most one Pub/Sub call,
# and a second Firestore call only to record a withheld order).
FIRESTORE_SECONDS = budgets.WOOCOMMERCE_FIRESTORE_SECONDS
PUBLISH_SECONDS = budgets.WOOCOMMERCE_PUBLISH_SECONDS


class Runtime(Clients[OrderStore, Publisher]):
    """One instance's dependencies: sites and tenants now, Firestore and Pub/Sub clients on first use."""

    # Making a client on first use may hang or fail as well (credentials, an unreachable
    # emulator): inside the bound that is an unavailable dependency, which the delivery parks around.
    clients_made_inside_the_bound = True

    def __init__(
        self,
        tenants: Tenants | None,
        sites: Mapping[str, WooCommerceSiteConfig],
        *,
        default_region: str | None = "US",
        store: OrderStore | None = None,
        publisher: Publisher | None = None,
        store_factory: Callable[[], OrderStore] | None = None,
        publisher_factory: Callable[[], Publisher] | None = None,
        firestore_seconds: float = FIRESTORE_SECONDS,
        publish_seconds: float = PUBLISH_SECONDS,
        max_event_age: dt.timedelta = MAX_EVENT_AGE,
    ) -> None:
        self.tenants = tenants
        # Site key -> the site, validated with its secrets (WooCommerceSettings.sites); none without tenants.
        self.sites = dict(sites)
        self.default_region = default_region
        self.max_event_age = max_event_age
        self.firestore_seconds = firestore_seconds
        self.publish_seconds = publish_seconds
        # Given neither, the store (publisher) is None: a delivery that reaches it finds it unavailable
        # (a call through the bounded view fails inside the bound, like a client that cannot be made).
        make_store: Callable[[], OrderStore | None] = store_factory or (lambda: store)
        make_publisher: Callable[[], Publisher | None] = publisher_factory or (lambda: publisher)
        super().__init__(cast(Callable[[], OrderStore], make_store), cast(Callable[[], Publisher], make_publisher))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require_tenants: bool = True) -> Runtime:
        """Raises :class:`ConfigError` naming the variable that is wrong.

        ``require_tenants=False`` (the replay tool) tolerates missing site settings:
        parked envelopes only need the project and the topic.
        """
        settings = WooCommerceSettings.from_env(environ)
        log.set_level(settings.log_level)
        tenants: Tenants | None = None
        sites: dict[str, WooCommerceSiteConfig] = {}
        try:
            tenants = settings.tenants()
            sites = settings.sites(tenants)
        except ConfigError:
            if require_tenants:
                raise
            tenants, sites = None, {}

        return cls(
            tenants,
            sites,
            default_region=settings.default_phone_region,
            store_factory=lambda: store_from_settings(settings),
            publisher_factory=lambda: publisher_from_settings(settings),
            max_event_age=dt.timedelta(days=settings.max_event_age_days),
        )

    def firestore_call(self) -> OrderStore:
        """The store for one call: it fails with DependencyUnavailable after ``firestore_seconds``."""
        return self.bounded_store(Deadline(self.firestore_seconds))

    def publish_call(self) -> Publisher:
        """The publisher for one call: it fails with DependencyUnavailable after ``publish_seconds``."""
        return self.bounded_publisher(Deadline(self.publish_seconds))

    def site(self, source: str | None) -> WooCommerceSiteConfig | None:
        """The configured site ``X-WC-Webhook-Source`` names (a URL; its scheme and ``www.`` are dropped)."""
        return self.sites.get(shop_key(source)) if source else None

    def pixel_and_policy(self, site: WooCommerceSiteConfig) -> tuple[PixelConfig, ConsentPolicy]:
        assert self.tenants is not None
        pixel = self.tenants.pixel(site.pixel_code)
        assert pixel is not None  # Tenants validates every site's pixel_code
        return pixel, self.tenants.policy_for(site.pixel_code, site.consent_policy)

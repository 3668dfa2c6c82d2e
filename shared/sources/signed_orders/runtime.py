"""What one instance of the signed-orders function holds: its sites and limits, Firestore and Pub/Sub made on first use.

A request's calls share one :class:`~shared.infra.deadline.Deadline` of ``io_seconds``
(:meth:`Runtime.bounded_store`, :meth:`Runtime.bounded_publisher`); a client that cannot be made
counts against it too, so an unreachable dependency is a 503 in time, which the backend retries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from shared.config import ConsentPolicy, PixelConfig, Tenants
from shared.domain.events import shop_key
from shared.infra import log
from shared.infra.instance import Clients, first_use
from shared.infra.pubsub import Publisher, publisher_from_settings
from shared.infra.store import store_from_settings
from shared.receive.orders import MAX_EVENT_AGE, OrderStore
from shared.sources.signed_orders.settings import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TOLERANCE_SECONDS,
    SignedOrdersSettings,
    SiteConfig,
)

# A request's Firestore and Pub/Sub calls together (the replay claim, the context read, the publish):
# far below the 30 s most HTTP clients wait, so the backend reads a 503 rather than its own timeout.
IO_SECONDS = 8.0


class Runtime(Clients[OrderStore, Publisher]):
    """One instance's dependencies: sites and tenants now, Firestore and Pub/Sub clients on first use."""

    clients_made_inside_the_bound = True

    def __init__(
        self,
        tenants: Tenants,
        sites: Mapping[str, SiteConfig],
        *,
        default_region: str | None = "US",
        store: OrderStore | None = None,
        publisher: Publisher | None = None,
        store_factory: Callable[[], OrderStore] | None = None,
        publisher_factory: Callable[[], Publisher] | None = None,
        io_seconds: float = IO_SECONDS,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_event_age: dt.timedelta = MAX_EVENT_AGE,
    ) -> None:
        self.tenants = tenants
        self.sites = dict(sites)
        self.default_region = default_region
        self.io_seconds = io_seconds
        self.tolerance_seconds = tolerance_seconds
        self.max_body_bytes = max_body_bytes
        self.max_event_age = max_event_age
        super().__init__(first_use(store, store_factory, "store"), first_use(publisher, publisher_factory, "publisher"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        """Raises :class:`shared.config.ConfigError` naming the variable that is wrong."""
        settings = SignedOrdersSettings.from_env(environ)
        log.set_level(settings.log_level)
        tenants = settings.tenants()
        return cls(
            tenants,
            settings.sites(tenants),
            default_region=settings.default_phone_region,
            store_factory=lambda: store_from_settings(settings),
            publisher_factory=lambda: publisher_from_settings(settings),
            tolerance_seconds=settings.tolerance_seconds,
            max_body_bytes=settings.max_body_bytes,
            max_event_age=dt.timedelta(days=settings.max_event_age_days),
        )

    def site(self, name: str | None) -> SiteConfig | None:
        """The configured site a ``Pipeline-Site`` header names (a host; a URL's scheme and ``www.`` are dropped)."""
        return self.sites.get(shop_key(name)) if name and name.strip() else None

    def pixel_and_policy(self, site: SiteConfig) -> tuple[PixelConfig, ConsentPolicy]:
        pixel = self.tenants.pixel(site.pixel_code)
        assert pixel is not None  # Tenants validates every entry's pixel_code
        return pixel, self.tenants.policy_for(site.pixel_code, site.consent_policy)

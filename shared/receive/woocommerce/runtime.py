"""What one instance of the WooCommerce webhook holds: its tenants, and Firestore and Pub/Sub made on first use.

Separate from the delivery so that the replay tool builds the same dependencies
(without the site settings when it only has envelopes to publish), and so that
the time bounds on every Firestore and Pub/Sub call live next to the clients.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from shared import budgets
from shared.config import ConfigError, ConsentPolicy, PixelConfig, Tenants, WooCommerceSettings, WooCommerceSiteConfig
from shared.infra import log
from shared.infra.deadline import BoundedProxy, Deadline
from shared.infra.instance import PerInstance
from shared.infra.pubsub import Publisher, publisher_from_settings
from shared.infra.store import store_from_settings
from shared.receive.orders import MAX_EVENT_AGE, OrderStore

# Bounded waits: WooCommerce gives up after 60 s, the function's own timeout may be the same.
# Each call gets its dependency's whole budget (a delivery makes at most one Pub/Sub call,
# and a second Firestore call only to record a withheld order).
FIRESTORE_SECONDS = budgets.WOOCOMMERCE_FIRESTORE_SECONDS
PUBLISH_SECONDS = budgets.WOOCOMMERCE_PUBLISH_SECONDS


class _MadeInsideTheBound:
    """A client's methods, with the client itself fetched inside the bounded call.

    Making the client on first use may hang or fail as well (credentials, an
    unreachable emulator); inside the bound that is an unavailable dependency
    like any other, which the delivery parks around, not an internal error.
    """

    def __init__(self, get: Callable[[], object]) -> None:
        self._get = get

    def __getattr__(self, name: str) -> Callable[..., object]:
        return lambda *args, **kwargs: getattr(self._get(), name)(*args, **kwargs)


class Runtime:
    """One instance's dependencies: tenants now, Firestore and Pub/Sub clients on first use."""

    def __init__(
        self,
        tenants: Tenants | None,
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
        self.default_region = default_region
        self.max_event_age = max_event_age
        self.firestore_seconds = firestore_seconds
        self.publish_seconds = publish_seconds
        # Given neither, the store (publisher) is None: a delivery that reaches it finds it unavailable.
        self._store: PerInstance[OrderStore | None] = PerInstance(store_factory or (lambda: store))
        self._publisher: PerInstance[Publisher | None] = PerInstance(publisher_factory or (lambda: publisher))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require_tenants: bool = True) -> Runtime:
        """Raises :class:`ConfigError` naming the variable that is wrong.

        ``require_tenants=False`` (the replay tool) tolerates missing site settings:
        parked envelopes only need the project and the topic.
        """
        settings = WooCommerceSettings.from_env(environ)
        log.set_level(settings.log_level)
        try:
            tenants: Tenants | None = settings.tenants()
        except ConfigError:
            if require_tenants:
                raise
            tenants = None

        return cls(
            tenants,
            default_region=settings.default_phone_region,
            store_factory=lambda: store_from_settings(settings),
            publisher_factory=lambda: publisher_from_settings(settings),
            max_event_age=dt.timedelta(days=settings.max_event_age_days),
        )

    @property
    def store(self) -> OrderStore | None:
        return self._store.get()

    @property
    def publisher(self) -> Publisher | None:
        return self._publisher.get()

    def bounded_store(self) -> OrderStore:
        """The store for one call: it fails with DependencyUnavailable after ``firestore_seconds``."""
        return BoundedProxy(_MadeInsideTheBound(lambda: self.store), "firestore", Deadline(self.firestore_seconds))

    def bounded_publisher(self) -> Publisher:
        """The publisher for one call: it fails with DependencyUnavailable after ``publish_seconds``."""
        return BoundedProxy(_MadeInsideTheBound(lambda: self.publisher), "pubsub", Deadline(self.publish_seconds))

    def site(self, source: str | None) -> WooCommerceSiteConfig | None:
        return self.tenants.woocommerce_site(source) if self.tenants and source else None

    def pixel_and_policy(self, site: WooCommerceSiteConfig) -> tuple[PixelConfig, ConsentPolicy]:
        assert self.tenants is not None
        pixel = self.tenants.pixel(site.pixel_code)
        assert pixel is not None  # Tenants validates every site's pixel_code
        return pixel, self.tenants.policy_for(site.pixel_code, site.consent_policy)

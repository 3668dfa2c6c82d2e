"""What one instance of the collect endpoint holds: its settings, rate limits, group commit, Firestore and Pub/Sub.

Firestore's calls of a group commit (or of a denial) share one
:class:`~shared.infra.deadline.Deadline` of ``store_seconds`` (:meth:`Runtime.bounded_store`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from shared import budgets
from shared.config import CollectSettings, Tenants
from shared.infra import log
from shared.infra.deadline import Deadline
from shared.infra.group_commit import GroupCommit
from shared.infra.instance import Clients, PerInstance, first_use
from shared.infra.metrics import COUNTERS
from shared.infra.pubsub import AsyncPublisher, publisher_from_settings
from shared.infra.store import store_from_settings
from shared.receive.collect.admission import pixel_origins
from shared.receive.collect.commit import ContextStore, KnownContexts, Unavailable, commit_plans
from shared.receive.collect.plan import MAX_EVENT_AGE_SECONDS, Plan
from shared.receive.collect.ratelimit import TokenBuckets

# Requests of one instance committed together at most (their contexts in <= 500-document batches).
COMMIT_MAX_REQUESTS = 100
# A page waits on its beacon's answer no longer than this for Firestore, and for Pub/Sub.
STORE_TIMEOUT_SECONDS = budgets.COLLECT_STORE_SECONDS


class Runtime(Clients[ContextStore, AsyncPublisher]):
    """One instance's settings; Firestore and Pub/Sub clients made on first use, once."""

    def __init__(
        self,
        tenants: Tenants,
        *,
        max_body_bytes: int = 32_768,
        max_events: int = 20,
        default_region: str | None = "US",
        trusted_hops: int = 0,
        rate_limit_per_minute: int = 0,
        rate_limit_burst: int = 120,
        store_factory: Callable[[], ContextStore] | None = None,
        publisher_factory: Callable[[], AsyncPublisher] | None = None,
        allow_automated_browsers: bool = False,
        max_event_age_days: int = MAX_EVENT_AGE_SECONDS // 86_400,
    ) -> None:
        self.tenants = tenants
        self.max_event_age = max_event_age_days * 86_400
        self.allow_automated_browsers = allow_automated_browsers
        self.max_body_bytes = max_body_bytes
        self.max_events = max_events
        self.default_region = default_region
        self.trusted_hops = trusted_hops
        self.rate_limit = TokenBuckets(rate_limit_per_minute, rate_limit_burst)
        # Any pixel's origins: what a preflight (which carries no body, so no pixel) may be allowed.
        self.origins_by_pixel = {code: pixel_origins(pixel) for code, pixel in tenants.pixels.items()}
        self.origins: frozenset[str] = frozenset().union(*self.origins_by_pixel.values())
        super().__init__(first_use(None, store_factory, "store"), first_use(None, publisher_factory, "publisher"))
        # A page waits on its beacon's answer no longer than this for Firestore (per group commit, per denial).
        self.store_seconds = STORE_TIMEOUT_SECONDS
        self._committer = PerInstance(lambda: GroupCommit(self._flush, max_items=COMMIT_MAX_REQUESTS))
        self.known_contexts = KnownContexts()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        """Raises :class:`shared.config.ConfigError` naming the variable that is wrong."""
        settings = CollectSettings.from_env(environ)
        log.set_level(settings.log_level)

        return cls(
            settings.tenants(),
            max_body_bytes=settings.max_body_bytes,
            max_events=settings.max_events_per_request,
            default_region=settings.default_phone_region,
            trusted_hops=settings.trusted_proxy_hops,
            rate_limit_per_minute=settings.rate_limit_per_minute,
            rate_limit_burst=settings.rate_limit_burst,
            allow_automated_browsers=settings.allow_automated_browsers,
            max_event_age_days=settings.max_event_age_days,
            # The RPC's own deadline lets an abandoned commit end; the bound in _flush caps the wait.
            store_factory=lambda: store_from_settings(settings, timeout=STORE_TIMEOUT_SECONDS),
            publisher_factory=lambda: publisher_from_settings(settings),
        )

    def store_for_commit(self) -> ContextStore:
        """The store for one group commit or denial: its calls within ``store_seconds`` of the client being ready.

        Raises what making the client raised, before the deadline starts.
        """
        self._store.get()
        return self.bounded_store(Deadline(self.store_seconds))

    def accept(self, plan: Plan) -> int:
        """Store the plan's context and publish its events, in one group commit with concurrent requests.

        Returns the click-context documents written; raises :class:`Unavailable`
        naming the part that failed.
        """
        try:
            return self._committer.get().submit(plan)
        except Unavailable:
            raise
        except Exception as exc:  # a timeout waiting for the group, or a bug in the flush: 503, never 500
            raise Unavailable("collect", exc) from exc

    def _flush(self, plans: list[Plan]) -> list[int | Exception]:
        COUNTERS.add("collect.commits")
        COUNTERS.add("collect.requests_committed", len(plans))
        try:
            # The client library retries an unreachable Firestore for a minute; the page should not wait.
            store = self.store_for_commit() if any(p.join_keys for p in plans) else None
        except Exception as exc:  # the client could not be made (credentials, settings): 503, not 500
            return [Unavailable("firestore", exc)] * len(plans)
        try:
            publisher = self.publisher
        except Exception as exc:  # as above
            return [Unavailable("pubsub", exc)] * len(plans)
        return commit_plans(plans, store, publisher)

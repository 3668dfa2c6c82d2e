"""Carrying a verified order out: the replay claim, then the shared order flow, every call within one deadline.

The only module of the source with side effects on our data. The store and publisher it is
given are the request's bounded views (:meth:`Runtime.bounded_store`); a
:class:`~shared.infra.deadline.DependencyUnavailable` from them leaves this module as it is, and
the handler answers 503: the backend signs again and retries, and every step here is safe to
repeat (the sender's claim on the order's event_id makes every copy one event).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from shared.domain.events import order_event_id
from shared.infra.pubsub import Publisher
from shared.infra.store import ORDER_EVENTS
from shared.outcome import Kind, Outcome
from shared.receive.orders import OrderEvent, OrderStore, block_purchase, process_order_event, record_outcome
from shared.sources.signed_orders.runtime import Runtime
from shared.sources.signed_orders.schema import PLATFORM, SignedOrder, checkout_consent
from shared.sources.signed_orders.settings import SiteConfig
from shared.sources.signed_orders.signature import Verified

# First part of a used signature's key in ORDER_EVENTS: ("signature", site, digest of "<t>.<body>").
# It names no event_id, so the report passes it by.
SIGNATURE_RECORD = "signature"
TEST_ORDER, CANCELLED = "test_order", "cancelled"


def replay_ttl(tolerance_seconds: int) -> dt.timedelta:
    """How long a used signature is remembered: past both ends of its tolerance, so it is never accepted twice."""
    return dt.timedelta(seconds=2 * tolerance_seconds)


def claim_signature(store: OrderStore, site: str, verified: Verified, tolerance_seconds: int) -> bool:
    """Take this signing for this request; False when an earlier request used it (a replay)."""
    key = (SIGNATURE_RECORD, site, verified.payload_digest)
    return store.claim_once(ORDER_EVENTS, key, replay_ttl(tolerance_seconds), site=site, signed_at=verified.timestamp)


def deliver(
    order: SignedOrder,
    event: OrderEvent,
    site: SiteConfig,
    runtime: Runtime,
    store: OrderStore,
    publisher: Publisher,
    now: Callable[[], float] = time.time,
) -> Outcome:
    """A verified, first-seen order to its outcome: skipped by a rule, cancelled, withheld, or published."""
    if order.test and not site.include_test_orders:
        skipped = Outcome(Kind.SKIPPED, "test order (the site's include_test_orders is off)", event.event_id,
                          {"rule": TEST_ORDER})  # fmt: skip
        record_outcome(store, skipped, rule=TEST_ORDER)
        return skipped
    if order.status == CANCELLED:
        return _cancel(order, site, store)
    pixel, policy = runtime.pixel_and_policy(site)
    return process_order_event(
        event, pixel=pixel, policy=policy, store=store, publisher=publisher, default_region=runtime.default_region,
        max_event_age=runtime.max_event_age, now=now, consent=checkout_consent(order),
    )  # fmt: skip


def _cancel(order: SignedOrder, site: SiteConfig, store: OrderStore) -> Outcome:
    """A cancelled order: its Purchase blocked if the sender has not claimed it yet (as Shopify's cancellation)."""
    purchase_id = order_event_id(PLATFORM, site.site, order.order_id, "Purchase")
    blocked = block_purchase(store, site.pixel_code, purchase_id, source=PLATFORM, site=site.site)
    if blocked:
        reason = "order cancelled: no Purchase will be sent for it"
    else:
        reason = "order cancelled after its Purchase was sent: TikTok has no way to take it back"
    return Outcome(Kind.SKIPPED, reason, purchase_id, {"rule": CANCELLED, "purchase_blocked": blocked})

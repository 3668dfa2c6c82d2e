"""Delivering one mapped order: the shared order flow, never losing the event when Firestore or Pub/Sub is down.

WooCommerce never retries a delivery. When Firestore stays unavailable but the
checkout's consent decides, the event is published without the stored click
context; otherwise it is parked (:mod:`.parking`). :func:`replay` runs a
parked record through the same path later.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.config import ConfigError, ConsentPolicy, PixelConfig
from shared.domain.consent import ConsentSnapshot, with_checkout_consent
from shared.domain.models import Envelope
from shared.infra.deadline import DependencyUnavailable
from shared.outcome import Kind, Outcome
from shared.receive.orders import OrderEvent, build_envelope, process_order_event
from shared.receive.woocommerce.parking import order_from_record, park_envelope, park_order
from shared.receive.woocommerce.runtime import Runtime
from shared.receive.woocommerce.settings import WooCommerceSiteConfig


class _ObservedStore:
    """The store as the order flow sees it: bounded and observed.

    After a failure, :func:`deliver` needs to know whether the click context was
    read (and what it held) to decide between publishing without it and parking.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.context_read = False
        self.context: dict[str, Any] | None = None

    def find_click_context(self, pixel_code: str, join_keys: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
        self.context = self._runtime.firestore_call().find_click_context(pixel_code, list(join_keys))
        self.context_read = True
        return self.context

    def claim_once(self, collection: str, key: Sequence[object], ttl: dt.timedelta, **fields: Any) -> bool:
        return self._runtime.firestore_call().claim_once(collection, key, ttl, **fields)

    def get(self, collection: str, key: Sequence[object]) -> dict[str, Any] | None:
        return self._runtime.firestore_call().get(collection, key)


class _ObservedPublisher:
    """The publisher, bounded, keeping what it was asked to publish (to park it when publishing fails)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.envelopes: list[Envelope] = []

    def publish(self, envelopes: list[Envelope]) -> list[str]:
        self.envelopes = list(envelopes)
        return self._runtime.publish_call().publish(self.envelopes)


def deliver(
    order: OrderEvent, consent: ConsentSnapshot | None, site: WooCommerceSiteConfig, runtime: Runtime
) -> Outcome:
    """The shared order flow with bounded waits; never loses the event when Firestore or Pub/Sub is down."""
    pixel, policy = runtime.pixel_and_policy(site)
    store, publisher = _ObservedStore(runtime), _ObservedPublisher(runtime)
    try:
        outcome = process_order_event(
            order, pixel=pixel, policy=policy, store=store, publisher=publisher, default_region=runtime.default_region,
            max_event_age=runtime.max_event_age, consent=consent,
        )  # fmt: skip
    except DependencyUnavailable as exc:
        failure = exc
    else:
        return outcome
    if publisher.envelopes:  # consent decided, publishing failed
        return park_envelope(publisher.envelopes[0], f"pubsub unavailable ({failure.detail})")
    if not store.context_read and consent is None:
        reason = f"firestore unavailable ({failure.detail}): consent unknown until the click context is read"
        return park_order(order, consent, runtime.default_region, reason)
    return _publish_without_context(order, pixel, policy, store.context, consent, runtime,
                                  f"firestore unavailable ({failure.detail})")  # fmt: skip


def _publish_without_context(
    order: OrderEvent,
    pixel: PixelConfig,
    policy: ConsentPolicy,
    context: dict[str, Any] | None,
    consent: ConsentSnapshot | None,
    runtime: Runtime,
    why: str,
) -> Outcome:
    """Firestore is down but the checkout's answer decides consent: publish without the stored click context.

    The sender claims each event_id, so a later update of this order can not
    make a second Purchase.
    """
    envelope, withheld = build_envelope(order, pixel, with_checkout_consent(context, consent), policy,
                                        runtime.default_region, received_at=int(time.time()))  # fmt: skip
    if envelope is None:
        return withheld  # type: ignore[return-value]
    try:
        runtime.publish_call().publish([envelope])
    except DependencyUnavailable as exc:
        return park_envelope(envelope, f"{why}; pubsub unavailable ({exc.detail})")
    details = {"click": envelope.user.has_click(), "click_context": False, "why": why}
    return Outcome(Kind.PUBLISHED, f"{envelope.event} published without the stored click context",
                   envelope.event_id, details)  # fmt: skip


def replay(record: Mapping[str, Any], runtime: Runtime) -> Outcome:
    """Publish a parked envelope, or run a parked order through the flow again. Safe to repeat."""
    if record.get("kind") == "envelope":
        envelope = Envelope.model_validate(record["envelope"])
        runtime.publish_call().publish([envelope])
        return Outcome(Kind.PUBLISHED, f"parked {envelope.event} replayed", envelope.event_id)
    if record.get("kind") == "order":
        site = runtime.site(record.get("site"))
        if site is None:
            raise ConfigError(f"site {record.get('site')!r} is not configured: set the webhook's settings to replay it")
        consent = ConsentSnapshot.model_validate(record["consent"]) if record.get("consent") else None
        return deliver(order_from_record(record["order"]), consent, site, runtime)
    raise ValueError(f"unknown parked record kind {record.get('kind')!r}")

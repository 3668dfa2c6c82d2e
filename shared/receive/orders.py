"""What both order webhooks do once an order is mapped: join, gate, dedupe, publish.

Shopify and WooCommerce each turn their payload into an :class:`OrderEvent`
(pure mapping, in ``shared/receive/shopify/`` and ``shared/receive/woocommerce/``); this
module does the rest the same way for both:

1. find the click context the collect endpoint stored under the order's join
   keys (cart/checkout token, order key, customer id);
2. let the stored consent snapshot, else the shop's policy, decide;
3. take the click ids from the order itself first, else from the context;
4. publish the envelope.

There is no claim here. The order event's id is deterministic
(:func:`shared.domain.events.order_event_id`), and the sender claims every order
event_id before it sends it (``event_claims``, :mod:`shared.send.claims`), so
that one claim is the order's: ``orders/create`` and ``orders/paid``, retries
and concurrent duplicates each publish, and the sender sends the first and
answers the others "duplicate". A crash anywhere before the publish leaves
nothing behind, and the platform's retry publishes. A cancellation is a
tombstone under the same key (:func:`block_purchase`), so a Purchase that
was not sent yet never is. One document per delivered order event, written
twice (claimed, then sent), instead of a receiver claim written twice more.

An order event withheld for consent (here), outside its window (here, rule
``outside_window``: paid more than ORDER_MAX_EVENT_AGE_DAYS ago; the sender
enforces the same window, so an order is sent once in its life) or skipped by
a shop's rules (test, POS, draft: ``shared.receive.shopify``) leaves an outcome record instead
(:func:`record_outcome`), so the report (``shared.report``) can count it. It is
keyed apart from the claim: a later delivery, after the shopper's grant, still
publishes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shared import budgets
from shared.config import ConsentPolicy, PixelConfig
from shared.domain import shapes
from shared.domain.consent import ConsentSnapshot, decide, with_checkout_consent
from shared.domain.events import ATTRIBUTION_WINDOW, OUTSIDE_WINDOW, order_event_id, order_window_refusal
from shared.domain.identity import RawIdentity, build_user
from shared.domain.models import Envelope, Page, Properties, UserData
from shared.infra import log
from shared.infra.metrics import count_dropped
from shared.infra.pubsub import Publisher
from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS, OUTCOME_RECORD
from shared.outcome import Kind, Outcome
from shared.sources import CUSTOMER, registry, shopify, woocommerce

# Outcome, cancellation and refund records (and a cancellation's tombstone): longer than
# Shopify's retry window, its day-late deliveries and TikTok's 48 h (shared.budgets).
ORDER_EVENT_TTL = budgets.ORDER_RECORD_TTL

# A cancellation's tombstone stands in for the Purchase's claim, so it must outlive the Purchase's window
# like a claim does (shared.budgets.order_claim_ttl), under the longest ORDER_MAX_EVENT_AGE_DAYS allowed
# (28): tombstones are rare, and the webhook that writes one need not know the sender's setting.
TOMBSTONE_TTL = budgets.order_claim_ttl(dt.timedelta(days=28))
# The Purchase's claim in event_claims says "cancelled" once a cancellation took it first.
CANCELLED = "cancelled"
# ORDER_MAX_EVENT_AGE_DAYS' default: TikTok's default click attribution window.
MAX_EVENT_AGE = ATTRIBUTION_WINDOW

# Join-key kinds, shared with the collect endpoint (what it stores under): each source's own, from its
# definition (shared.sources), and the framework's customer id. JOIN_KINDS reads the registry; the
# per-platform names stay importable here for the tests that spell them so.
JOIN_CUSTOMER = CUSTOMER.name
JOIN_KINDS = tuple(kind.name for kind in registry.JOIN_KINDS)
JOIN_SHOPIFY_CART = shopify.CART.name
JOIN_SHOPIFY_CHECKOUT = shopify.CHECKOUT.name
JOIN_WOO_ORDER_KEY = woocommerce.ORDER_KEY.name
JOIN_WOO_SESSION = woocommerce.SESSION.name


@dataclass
class OrderEvent:
    """A platform order mapped to one TikTok event, before the click join and consent."""

    platform: str  # an order source's name (shared.sources.registry.ORDER_SOURCES)
    shop: str  # shop key: myshopify domain or site host
    order_id: str
    event: str
    event_time: int
    identity: RawIdentity
    properties: dict[str, Any]
    page_url: str | None = None
    referrer: str | None = None
    # (kind, value) pairs, most specific first; see JOIN_KINDS.
    join_keys: list[tuple[str, str]] = field(default_factory=list)

    @property
    def event_id(self) -> str:
        return order_event_id(self.platform, self.shop, self.order_id, self.event)


@runtime_checkable
class OrderStore(Protocol):
    """The store as the order flow uses it, and no more: a click context to read, a one-time claim, a read.

    :class:`shared.infra.store.Store` is the real one (Firestore); ``tests/unit/memory.py``
    is the in-memory stand-in the unit tests use, held to the same behaviour by
    ``tests/emulator/test_memory_store_contract.py``.
    """

    def find_click_context(self, pixel_code: str, join_keys: Iterable[tuple[str, str]]) -> dict[str, Any] | None: ...

    def claim_once(self, collection: str, key: Sequence[object], ttl: dt.timedelta, **fields: Any) -> bool: ...

    def get(self, collection: str, key: Sequence[object]) -> dict[str, Any] | None: ...


def _merge_context(user: UserData, context: dict[str, Any] | None) -> UserData:
    """Fill what the order lacks from the stored click context (already hashed there).

    The browser's signals (click ids, ip, user agent, locale) fill a field the
    order leaves empty. Its hashed email, phone and external_id are only the
    page's word: each kind is taken only when the verified order carries none of
    that kind, never beside the order's own, so a shopper cannot pin their order
    to someone else's TikTok identity (docs/collect.md, "What is forwarded").
    """
    if not context:
        return user
    updates: dict[str, Any] = {}
    for name in ("ttclid", "ttp", "ip", "user_agent", "locale"):
        if not getattr(user, name) and context.get(name):
            updates[name] = context[name]
    if "ip" in updates:  # a context stored before private addresses were dropped may hold one
        updates["ip"] = shapes.valid_ip(updates["ip"])
    for name in ("ttclid", "ttp", "locale"):  # and one stored before shapes were checked, anything
        if name in updates:
            updates[name] = shapes.SHAPES[name](updates[name])
    hashed = context.get("user") or {}
    for name in ("email", "phone", "external_id"):
        theirs = list(dict.fromkeys(h for h in hashed.get(name) or [] if h))
        if theirs and not getattr(user, name):
            updates[name] = theirs[:10]
    return user.model_copy(update=updates) if updates else user


def build_envelope(
    order: OrderEvent,
    pixel: PixelConfig,
    context: dict[str, Any] | None,
    policy: ConsentPolicy,
    default_region: str | None,
    *,
    received_at: int,
) -> tuple[Envelope | None, Outcome | None]:
    """Pure: the envelope to publish, or the outcome that says why there is none (``received_at``: our clock)."""
    snapshot = ConsentSnapshot.model_validate(context["consent"]) if context and context.get("consent") else None
    decision = decide(snapshot, policy, pixel.gpc)
    if not decision.send:
        return None, Outcome(
            Kind.WITHHELD_CONSENT,
            f"consent {decision.reason}",
            order.event_id,
            {"consent": decision.reason, "click_context": bool(context)},
        )
    user = _merge_context(build_user(order.identity, default_region, on_drop=count_dropped), context)
    page_url = order.page_url or (context or {}).get("page_url")
    envelope = Envelope(
        source=order.platform,
        pixel_code=pixel.pixel_code,
        event=order.event,
        event_id=order.event_id,
        event_time=order.event_time,
        user=user,
        page=Page(url=page_url[:2048], referrer=(order.referrer or None) and order.referrer[:2048])
        if page_url
        else None,
        properties=Properties.model_validate(order.properties),
        limited_data_use=decision.limited_data_use,
        consent=decision.reason,
        test_event_code=pixel.test_event_code,
        received_at=received_at,
    )
    return envelope, None


def process_order_event(
    order: OrderEvent,
    *,
    pixel: PixelConfig,
    policy: ConsentPolicy,
    store: OrderStore,
    publisher: Publisher,
    default_region: str | None = None,
    max_event_age: dt.timedelta = MAX_EVENT_AGE,
    now: Callable[[], float] = time.time,
    consent: ConsentSnapshot | None = None,
) -> Outcome:
    """Window, join, gate, publish. Raises if reading the context or publishing fails (nothing was written).

    ``consent``: the shopper's answer the signed order itself carries (a checkout's), laid over the
    stored context's (:func:`~shared.domain.consent.with_checkout_consent`), with or without join keys.

    An order event whose event_time lies outside its window (older than ``max_event_age``, or further
    ahead than a platform's clock may be) is answered ``skipped`` (rule ``outside_window``), recorded
    and never published: the platform must not retry it, and the sender, which enforces the same
    window, would never send it.
    """
    refusal = order_window_refusal(order.event_time, int(now()), max_event_age)
    if refusal is not None:
        outcome = Outcome(Kind.SKIPPED, refusal, order.event_id, {"rule": OUTSIDE_WINDOW})
        record_outcome(store, outcome, rule=OUTSIDE_WINDOW)
        return outcome
    context = store.find_click_context(pixel.pixel_code, order.join_keys) if order.join_keys else None
    context = with_checkout_consent(context, consent)
    envelope, withheld = build_envelope(order, pixel, context, policy, default_region, received_at=int(now()))
    if envelope is None:
        assert withheld is not None  # build_envelope gives an envelope or the outcome that says why there is none
        record_outcome(store, withheld, consent=withheld.details.get("consent"))
        return withheld
    publisher.publish([envelope])
    details = {"click": envelope.user.has_click(), "limited_data_use": envelope.limited_data_use}
    for flag, message in weak_points(envelope).items():
        log.warning(message, event_id=envelope.event_id, order_id=order.order_id, platform=order.platform)
        details[flag] = True
    return Outcome(Kind.PUBLISHED, f"{envelope.event} published", envelope.event_id, details)


def block_purchase(store: OrderStore, pixel_code: str, event_id: str, **fields: Any) -> bool:
    """Take the Purchase's sender claim as a cancellation tombstone; whether the Purchase is blocked.

    True when the tombstone is written now or was by an earlier delivery of the
    cancellation; False when the sender already claimed the Purchase (it is
    being sent or was sent: TikTok has no way to take it back).
    """
    key = (pixel_code, "Purchase", event_id)
    fields = {"pixel_code": pixel_code, "event": "Purchase", "event_id": event_id, "state": CANCELLED, **fields}
    if store.claim_once(EVENT_CLAIMS, key, TOMBSTONE_TTL, **fields):
        return True
    return (store.get(EVENT_CLAIMS, key) or {}).get("state") == CANCELLED


def weak_points(envelope: Envelope) -> dict[str, str]:
    """Pure: what TikTok cannot use in an order event that goes out all the same, by flag name.

    Not refused: a sale without a total is still a sale to count, but whoever
    reads the logs should learn why it counts no revenue. (An order event
    outside its window is refused instead: :func:`process_order_event`.)
    """
    problems: dict[str, str] = {}
    if envelope.event == "Purchase" and (envelope.properties.value is None or envelope.properties.currency is None):
        problems["no_value"] = "Purchase without value or currency: TikTok cannot count its revenue"
    return problems


def record_outcome(store: OrderStore, outcome: Outcome, **fields: Any) -> None:
    """Remember why an order event was not published (first answer wins); never fails the delivery."""
    if not outcome.event_id:
        return
    try:
        store.claim_once(ORDER_EVENTS, (OUTCOME_RECORD, outcome.event_id), ORDER_EVENT_TTL,
                         event_id=outcome.event_id, outcome=outcome.kind, **fields)  # fmt: skip
    except Exception as exc:  # only the report misses it; the delivery's answer stands
        log.warning("could not record the order event's outcome", error=type(exc).__name__, event_id=outcome.event_id)

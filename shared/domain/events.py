"""TikTok standard event names, the deterministic event_id scheme, and when an event may have happened."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from shared.sources.registry import ORDER_SOURCES

# --- the event-time window, one home for every receiver -------------------------------------------
# TikTok's default click attribution window: an older event attributes nothing (and the
# ORDER_/COLLECT_MAX_EVENT_AGE_DAYS defaults).
ATTRIBUTION_WINDOW = dt.timedelta(days=7)
EARLIEST_EVENT_TIME = 1_420_070_400  # 2015-01-01: TikTok refuses older events
# How far ahead of our clock a timestamp may run and still be believed: an order's come from the
# platform's servers (time zones written wrong, skew), a browser's from a device clock.
ORDER_CLOCK_AHEAD_SECONDS = 86_400
BROWSER_CLOCK_AHEAD_SECONDS = 600


def plausible_order_time(seconds: int, now: int) -> bool:
    """Whether an order's own timestamp can be its event_time (else the caller uses the time of receipt)."""
    return EARLIEST_EVENT_TIME <= seconds <= now + ORDER_CLOCK_AHEAD_SECONDS


# The rule an order event outside its window is skipped by (the outcome's and make report's "rule").
OUTSIDE_WINDOW = "outside_window"


def order_window_refusal(event_time: int, now: int, max_age: dt.timedelta) -> str | None:
    """Why an order event may not be sent at ``now``, or None when its event_time lies in the window.

    The window is ``[now - max_age, now + ORDER_CLOCK_AHEAD_SECONDS]``, both ends included:
    ``max_age`` is ORDER_MAX_EVENT_AGE_DAYS (TikTok attributes nothing older), and the future
    allowance is the one the mappings already believe an order's timestamp within
    (:func:`plausible_order_time`), so nothing a mapping accepted is refused here for its clock.
    Both webhooks and the sender ask it, each against its own clock; the sender's claim only has
    to outlive this window (``shared.budgets.order_claim_ttl``) for an order to be sent once in its life.
    """
    age = now - event_time
    if age > max_age.total_seconds():
        return (
            f"order event_time is {age / 86_400:.1f} days old, past ORDER_MAX_EVENT_AGE_DAYS ({max_age.days}): "
            "never sent, TikTok attributes nothing outside the attribution window"
        )
    if -age > ORDER_CLOCK_AHEAD_SECONDS:
        return (
            f"order event_time is {-age / 3600:.1f} hours ahead of our clock, more than the "
            f"{ORDER_CLOCK_AHEAD_SECONDS // 3600} hours a platform's clock may be: never sent"
        )
    return None


def within_browser_window(seconds: int, received: int, max_age_seconds: int) -> bool:
    """Whether a page's timestamp lies in the window collect believes (else it is sent at the time of receipt)."""
    return received - max_age_seconds <= seconds <= received + BROWSER_CLOCK_AHEAD_SECONDS


# Current standard events (TikTok renamed Purchase and Lead on 2025-05-01).
STANDARD_EVENTS: frozenset[str] = frozenset(
    {
        "ViewContent", "AddToCart", "AddToWishlist", "InitiateCheckout", "AddPaymentInfo",
        "Purchase", "Lead", "CompleteRegistration", "Search", "Contact", "Download",
        "Subscribe", "StartTrial", "Schedule", "FindLocation", "CustomizeProduct",
        "SubmitApplication", "ApplicationApproval",
    }
)  # fmt: skip

# Older names TikTok still accepts; we send the current one so that server
# events deduplicate with pixels that use either spelling.
LEGACY_ALIASES: dict[str, str] = {
    "CompletePayment": "Purchase",
    "SubmitForm": "Lead",
    "GenerateLead": "Lead",
}

# Deprecated (sunset in 2027) but still accepted: passed through unchanged.
# PlaceAnOrder is not mapped to Purchase on purpose: an order placed is not an
# order paid, and mapping it would let one order count two Purchases.
DEPRECATED_EVENTS: frozenset[str] = frozenset({"PlaceAnOrder", "ClickButton"})

# Events that report an order (canonical names: CompletePayment is Purchase). Orders belong to the order
# webhooks, which read them from the platform; from a browser they are only a claim (docs/collect.md).
PURCHASE_EVENTS: frozenset[str] = frozenset({"Purchase", "PlaceAnOrder"})

# Custom event names are allowed by TikTok; we only keep them sane.
_CUSTOM_EVENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,49}$")


class UnknownEventName(ValueError):
    pass


_BY_LOWER = {n.lower(): n for n in STANDARD_EVENTS | DEPRECATED_EVENTS} | {
    alias.lower(): current for alias, current in LEGACY_ALIASES.items()
}


def canonical_event_name(name: str) -> str:
    """The current TikTok name for ``name`` (legacy aliases mapped, case-insensitive)."""
    text = (name or "").strip()
    known = _BY_LOWER.get(text.lower())
    if known is not None:
        return known
    if _CUSTOM_EVENT.match(text):
        return text
    raise UnknownEventName(f"event name {text[:60]!r} is not a TikTok event name")


def order_event_id(platform: str, shop: str, order_id: str | int, event: str) -> str:
    """The event_id of an order event, reproducible by the storefront pixel.

    Format: ``<platform>:<shop>:order:<order id>:<Event>``, e.g.
    ``shopify:example.myshopify.com:order:820982911946154508:Purchase``.
    ``shop`` is the Shopify ``*.myshopify.com`` domain or the WooCommerce site
    host (no scheme, no ``www.``, lowercase); the order id is the platform's
    numeric id written exactly (never through a float). On the thank-you page
    the same id is ``'shopify:' + init.data.shop.myshopifyDomain + ':order:' +
    event.data.checkout.order.id + ':Purchase'``.
    """
    return f"{platform}:{shop_key(shop)}:order:{order_id}:{canonical_event_name(event)}"


def shop_key(shop_or_url: str) -> str:
    """A site URL or shop domain reduced to its lowercase host (the shop id we send)."""
    text = shop_or_url.strip().lower()
    text = re.sub(r"^[a-z]+://", "", text)
    text = text.split("/", 1)[0]
    if text.startswith("www."):
        text = text[4:]
    return text


# --- recognising the order scheme in text someone else wrote ---------------------------------------
# Read from the registry of sources: each order source's name (shared.sources.registry.ORDER_SOURCES).
_ORDER_SCHEME = re.compile(rf"^({'|'.join(map(re.escape, ORDER_SOURCES))}):[^:]+:order:")
# Characters that show as nothing (format: zero-width, soft hyphen, BOM, bidi; controls; separators;
# marks left over from decomposition): a look-alike of an order id without them is still one.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def id_skeleton(text: str) -> str:
    """``text`` as it reads: compatibility forms mapped (NFKC's, decomposed), case-folded, invisibles removed.

    ``SHOPIFY:shop:order:1``, ``shop\u200bify:...``, ``shopify\uff1ashop...`` (fullwidth colon) and
    ``\uff53hopify:...`` all read ``shopify:shop:order:1``. Homoglyphs from other scripts (a Cyrillic
    ``\u043e``) are not mapped: Unicode normalisation does not relate them.
    """
    folded = unicodedata.normalize("NFKD", text)
    folded = unicodedata.normalize("NFKD", folded.casefold())
    return "".join(c for c in folded if unicodedata.category(c) not in _INVISIBLE_CATEGORIES)


def is_order_event_id(event_id: str) -> bool:
    """Whether ``event_id`` is, or reads as, an order event's id (:func:`order_event_id`'s scheme)."""
    return bool(_ORDER_SCHEME.match(event_id) or _ORDER_SCHEME.match(id_skeleton(event_id)))

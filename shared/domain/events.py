"""TikTok standard event names, the deterministic event_id scheme, and when an event may have happened."""

from __future__ import annotations

import datetime as dt
import re

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

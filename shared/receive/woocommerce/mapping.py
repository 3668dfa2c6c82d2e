"""WooCommerce's v3 order -> an :class:`OrderEvent`, and the rules of which deliveries make one.

Pure, no I/O: the topic and status rules (:func:`ignore_reason`),
the setup ping (:func:`is_ping`), the order meta our PHP snippet and WooCommerce's Order
Attribution write, and the mapping (:func:`map_order`). Separate from the delivery so that
every rule about an untrusted order can be read and tested without Firestore or Pub/Sub.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.domain import shapes
from shared.domain.consent import ConsentSnapshot
from shared.domain.events import plausible_order_time
from shared.domain.identity import RawIdentity
from shared.domain.scrub import scrub_text
from shared.domain.untrusted import ascii_int, clean_text, money
from shared.receive.orders import JOIN_CUSTOMER, OrderEvent
from shared.receive.woocommerce.settings import WooCommerceSiteConfig
from shared.sources.woocommerce import ORDER_KEY, SESSION

PLATFORM = "woocommerce"
ORDER_TOPICS = frozenset({"order.created", "order.updated"})
# wc_get_is_paid_statuses(); date_paid_gmt covers sites that add their own paid statuses.
PAID_STATUSES = frozenset({"processing", "completed"})
# A refunded order still has date_paid_gmt: these statuses win over it.
NEVER_PURCHASE_STATUSES = frozenset({"refunded", "failed", "cancelled", "trash"})

# Order meta written at checkout by the PHP snippet in docs/woocommerce.md.
META_TTCLID = "_ttclid"
META_TTP = "_ttp"
META_SESSION = "_tt_session"
META_CONSENT = "_tt_consent"
# WooCommerce's own Order Attribution (8.5+), empty when the site's consent tool blocks its tracking.
# Only the ttclid is read from the landing URL: the rest of it (other parameters, the path) may
# carry what a shopper typed and is never logged or forwarded.
META_WC_SESSION_ENTRY = "_wc_order_attribution_session_entry"
META_WC_USER_AGENT = "_wc_order_attribution_user_agent"
_MAX_URL = 65_536

# Ids are 64-bit at most; a line of a million units is beyond any real order.
_MAX_ID_DIGITS = 19
_MAX_QUANTITY_DIGITS = 6
_PING_BODY = re.compile(rb"webhook_id=\d{1,20}")
_CURRENCY = re.compile(r"[A-Z]{3}")


class UnusableOrder(ValueError):
    """A signed order we can not turn into an event; the message names the field."""


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def is_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """WooCommerce's setup ping: form body ``webhook_id=<id>``, no signature, no X-WC headers."""
    if len(body) > 64 or not _PING_BODY.fullmatch(body.strip()):
        return False
    return not any(name.startswith("x-wc-webhook-") for name in _lower_headers(headers))


def logged_order_id(order: Mapping[str, Any]) -> str | None:
    """The order id as the delivery's log line carries it, whatever the body holds there."""
    return _text(order.get("id"), 40)


def order_status(order: Mapping[str, Any]) -> str:
    status = order.get("status")
    return status.strip().lower().removeprefix("wc-") if isinstance(status, str) else ""


def ignore_reason(topic: str, order: Mapping[str, Any]) -> str | None:
    """Why this delivery sends no Purchase, or None when the order is paid (first sight claims it)."""
    if topic not in ORDER_TOPICS:
        return f"topic {topic[:60]!r} is not handled (subscribe order.created and order.updated)"
    status = order_status(order)
    if status in NEVER_PURCHASE_STATUSES:
        return f"status {status} never produces a Purchase"
    if status in PAID_STATUSES or _text(order.get("date_paid_gmt")):
        return None
    return f"order not paid yet (status {status or 'missing'}, no date_paid_gmt)"


def _text(value: Any, limit: int = 500) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, int) and value.bit_length() > 1024:
        return None  # str() of a huge int is slow, and no text field is a 300-digit number
    text = clean_text(str(value)[: limit * 2]).strip()
    return text[:limit] if text else None


def _positive_int(value: Any, max_digits: int = _MAX_ID_DIGITS) -> int | None:
    """ASCII digits only: "²".isdigit() is True, and int() then refuses it."""
    number = ascii_int(value, max_digits=max_digits)
    return number if number else None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def meta_value(order: Mapping[str, Any], key: str, limit: int = 500) -> str | None:
    """The first non-empty value of order meta ``key`` (``meta_data: [{id, key, value}]``)."""
    items = order.get("meta_data")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and item.get("key") == key and (value := _text(item.get("value"), limit)):
            return value
    return None


def _landing_ttclids(order: Mapping[str, Any]) -> list[str]:
    """The ``ttclid`` values of the landing URL WooCommerce's attribution recorded, and nothing else of that URL."""
    # Whole: landing URLs with many utm_* parameters are long, and a cut ttclid would be a wrong one.
    url = meta_value(order, META_WC_SESSION_ENTRY, limit=_MAX_URL)
    if not url:
        return []
    try:
        values = parse_qs(urlsplit(url).query).get("ttclid", [])
    except ValueError:
        return []
    return [value for raw in values if (value := raw.strip())]


def landing_ttclid(order: Mapping[str, Any]) -> str | None:
    """The landing URL's ``ttclid`` when it has a click id's shape (:func:`shared.domain.shapes.ttclid`)."""
    return next((value for value in _landing_ttclids(order) if shapes.ttclid(value)), None)


def click_id(order: Mapping[str, Any]) -> str | None:
    """The order's ttclid: our snippet's ``_ttclid`` meta, else WooCommerce's attribution landing URL.

    Both are free text anyone with the order could have written (an email reached
    TikTok as a ttclid once): the first of them that has a click id's shape wins;
    when neither has, the first value there is, which build_user drops and counts.
    A click context the collect endpoint stored fills it only when the order has
    none (shared.receive.orders), so the order's own record of the click wins.
    """
    present = [value for value in (meta_value(order, META_TTCLID), *_landing_ttclids(order)) if value]
    return next((value for value in present if shapes.ttclid(value)), present[0] if present else None)


def checkout_consent(order: Mapping[str, Any]) -> ConsentSnapshot | None:
    """The consent the checkout saw (``_tt_consent``: granted or denied); None when absent or unknown."""
    value = (meta_value(order, META_CONSENT) or "").lower()
    if value == "granted":
        return ConsentSnapshot(granted=True)
    if value == "denied":
        return ConsentSnapshot(granted=False)
    return None


def _gmt_timestamp(value: Any) -> int | None:
    """WooCommerce's ``*_gmt`` dates are UTC without a suffix ("2017-03-22T19:28:08")."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return int(parsed.timestamp())
    except (ValueError, OverflowError):
        return None


def event_time(order: Mapping[str, Any], now: float) -> int:
    """When it was paid, else created, else now (dates TikTok would refuse are skipped)."""
    for name in ("date_paid_gmt", "date_created_gmt"):
        stamp = _gmt_timestamp(order.get(name))
        if stamp is not None and plausible_order_time(stamp, int(now)):
            return stamp
    return int(now)


def _content_id(item: Mapping[str, Any], choice: str) -> str | None:
    product = _positive_int(item.get("product_id"))
    if choice == "sku":
        return _text(item.get("sku"), 256)
    if choice == "variation_id":
        product = _positive_int(item.get("variation_id")) or product
    return str(product) if product else None


def _contents(order: Mapping[str, Any], choice: str) -> list[dict[str, Any]]:
    items = order.get("line_items")
    contents = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        quantity = _positive_int(item.get("quantity"), _MAX_QUANTITY_DIGITS)
        # Free text forwarded to Pub/Sub and TikTok: a name can carry what a shopper typed.
        name = scrub_text(html.unescape(_text(item.get("name"), 2000) or ""))[:512].strip()
        content = {
            "content_id": _content_id(item, choice),
            "content_name": name or None,
            "price": money(item.get("price")),
            "quantity": quantity,
        }
        contents.append({k: v for k, v in content.items() if v is not None})
    return [c for c in contents if c][:500]


def _identity(order: Mapping[str, Any], customer_id: int | None) -> RawIdentity:
    billing, shipping = _object(order.get("billing")), _object(order.get("shipping"))
    fields = ("first_name", "last_name", "postcode", "city", "state", "country")
    # Name, zip and place from one address (billing, which guests fill in too), so they agree.
    address = billing if any(_text(billing.get(f)) for f in fields) else shipping
    return RawIdentity(
        emails=[_text(billing.get("email"))],
        phones=[
            (_text(billing.get("phone"), 64), _text(billing.get("country"))),
            (_text(shipping.get("phone"), 64), _text(shipping.get("country"))),
        ],
        external_ids=[str(customer_id)] if customer_id else [],
        first_name=_text(address.get("first_name")),
        last_name=_text(address.get("last_name")),
        zip_code=_text(address.get("postcode"), 32),
        city=_text(address.get("city")),
        state=_text(address.get("state")),
        country=_text(address.get("country")),
        ttclid=click_id(order),
        ttp=meta_value(order, META_TTP),
        ip=_text(order.get("customer_ip_address"), 64),
        user_agent=_text(order.get("customer_user_agent"), 1024) or _text(meta_value(order, META_WC_USER_AGENT), 1024),
    )


def map_order(order: Mapping[str, Any], site: WooCommerceSiteConfig, now: float | None = None) -> OrderEvent:
    """The v3 order as a Purchase :class:`OrderEvent`; :class:`UnusableOrder` names what is missing."""
    order_id = _positive_int(order.get("id"))
    if order_id is None:
        raise UnusableOrder("field id: the order id is missing or not a positive integer")
    now = time.time() if now is None else now
    customer_id = _positive_int(order.get("customer_id"))
    currency = (_text(order.get("currency"), 10) or "").upper()
    contents = _contents(order, site.content_id)
    properties = {
        "currency": currency if _CURRENCY.fullmatch(currency) else None,
        "value": money(order.get("total")),
        "content_type": "product" if contents else None,
        "contents": contents,
        "num_items": sum(c.get("quantity", 0) for c in contents) or None,
        "order_id": str(order_id),
        "shop_id": site.site,
    }
    join_keys = [
        (ORDER_KEY.name, _text(order.get("order_key"), 200)),
        (SESSION.name, meta_value(order, META_SESSION)),
        (JOIN_CUSTOMER, str(customer_id) if customer_id else None),
    ]
    return OrderEvent(
        platform=PLATFORM,
        shop=site.site,
        order_id=str(order_id),
        event="Purchase",
        event_time=event_time(order, now),
        identity=_identity(order, customer_id),
        properties={k: v for k, v in properties.items() if v not in (None, [])},
        join_keys=[(kind, value) for kind, value in join_keys if value],
    )

"""Pure mapping of Shopify's untrusted JSON: identifiers, money, click ids, identity, TikTok properties.

Every value of a signed body is still untrusted (any type, any size, free text
a shopper typed): the ``as_*`` helpers take what is usable and drop the rest,
so a strange field costs that field, never the order. No I/O and no clock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.domain import shapes
from shared.domain.events import plausible_order_time
from shared.domain.identity import RawIdentity
from shared.domain.scrub import scrub_text, scrub_url
from shared.domain.shapes import valid_ip
from shared.domain.untrusted import money
from shared.receive.orders import JOIN_CUSTOMER
from shared.receive.shopify.settings import ShopifyShopConfig
from shared.sources.shopify import CART, CHECKOUT

# Note attributes our storefront snippet writes (cart attributes end up there).
_TTCLID_ATTRIBUTES = ("_ttclid", "ttclid")
_TTP_ATTRIBUTES = ("_ttp", "ttp")
# source_name -> (rule logged, the shop setting that includes such orders)
_SKIPPED_SOURCES = {
    "pos": ("pos_order", "include_pos_orders"),
    "shopify_draft_order": ("draft_order", "include_draft_orders"),
}

_CURRENCY_ANY_CASE = re.compile(r"^[A-Za-z]{3}$")
_PROVINCE = re.compile(r"^[A-Za-z0-9]{1,3}$")
_DIGITS = re.compile(r"^[0-9]{1,30}$")
_MAX_CONTENTS = 500


def as_obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_text(value: Any, limit: int = 2048) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def as_id(value: Any) -> str | None:
    """A Shopify numeric id, written exactly: an int, or a string of digits (never a float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        return value.strip()
    return None


def _matching(value: Any, pattern: re.Pattern[str]) -> str | None:
    """The text if it matches ``pattern`` whole (checked before any truncation)."""
    text = as_text(value, 100)
    return text if text and pattern.match(text) else None


def as_currency(value: Any) -> str | None:
    text = _matching(value, _CURRENCY_ANY_CASE)
    return text.upper() if text else None


def _country(value: Any) -> str | None:
    """A country code by shape (:func:`shared.domain.shapes.country`), upper case: a phone's region."""
    text = shapes.country(as_text(value, 100))
    return text.upper() if text else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        return int(value.strip())
    return None


def _amount_and_currency(
    document: dict[str, Any], amount_field: str, currency_field: str, choice: str
) -> tuple[float | None, str | None]:
    """(amount, currency) from ``<amount_field>_set`` in the chosen currency, else the plain fields.

    The plain amount fields are in the shop's currency, so the fallback pairs
    them with ``currency`` (never with ``presentment_currency``).
    """
    money_set = as_obj(document.get(amount_field + "_set"))
    chosen = as_obj(money_set.get("presentment_money" if choice == "presentment" else "shop_money"))
    amount, currency = money(chosen.get("amount")), as_currency(chosen.get("currency_code"))
    if amount is not None and currency:
        return amount, currency
    return money(document.get(amount_field)), as_currency(document.get(currency_field))


def iso_seconds(value: Any) -> int | None:
    """Unix seconds of an ISO 8601 timestamp (UTC when it names no zone), else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip()[:64])
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    try:
        return int(parsed.timestamp())
    except (OverflowError, OSError, ValueError):
        return None


def event_seconds(*candidates: Any, fallback: int) -> int:
    """Unix seconds of the first parseable ISO 8601 candidate within TikTok's range, else ``fallback``."""
    for candidate in candidates:
        seconds = iso_seconds(candidate)
        if seconds is not None and plausible_order_time(seconds, fallback):
            return seconds
    return fallback


def _absolute_url(value: Any, shop_domain: str) -> str | None:
    """``landing_site`` is usually a path: prefix it with the shop's domain. Placeholders are dropped."""
    text = as_text(value)
    if not text:
        return None
    if text.startswith("/"):
        return f"https://{shop_domain}{text}"
    parts = urlsplit(text)
    return text if parts.scheme in ("http", "https") and parts.netloc else None


def public_url(value: Any, shop_domain: str) -> str | None:
    """A landing page or referrer as it may be published: absolute, and scrubbed of personal data.

    A landing URL may carry ``?email=...`` or a phone number (a newsletter link,
    a form that submits by GET); only scheme, host, path, ``ttclid`` and
    ``utm_*`` survive (see :func:`shared.domain.scrub.scrub_url`). The click id is read
    from the raw ``landing_site`` before this, by :func:`click_ids`.
    """
    url = _absolute_url(value, shop_domain)
    return scrub_url(url) if url else None


def _attributes(value: Any) -> dict[str, str]:
    """``note_attributes`` as a dict: a list of ``{name, value}`` (webhooks) or already a dict."""
    pairs: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        pairs = value.items()
    else:
        pairs = ((item.get("name"), item.get("value")) for item in as_dicts(value))
    return {str(name).strip().lower(): text for name, raw in pairs if name and (text := as_text(raw, 600))}


def _first_shaped(candidates: list[str | None], shape: Callable[[object], str | None]) -> str | None:
    """The first candidate of its shape; else the first there is, which build_user drops and counts.

    Note attributes and the landing URL are free text a storefront script (or a shopper)
    wrote: an email or phone number there is no click id and never travels as one.
    """
    present = [c for c in candidates if c]
    return next((c for c in present if shape(c)), present[0] if present else None)


def click_ids(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """(ttclid, ttp) from the order itself: note attributes first, then the landing page's query."""
    attributes = _attributes(payload.get("note_attributes"))
    landing = as_text(payload.get("landing_site")) or ""
    try:
        from_landing = [value.strip() for value in parse_qs(urlsplit(landing).query).get("ttclid", [])]
    except ValueError:  # an unparseable landing URL has no click id
        from_landing = []
    ttclid = _first_shaped([*(attributes.get(name) for name in _TTCLID_ATTRIBUTES), *from_landing], shapes.ttclid)
    ttp = _first_shaped([attributes.get(name) for name in _TTP_ATTRIBUTES], shapes.ttp)
    return ttclid, ttp


def _ip(value: Any) -> str | None:
    """An address a browser could have had (see shared.domain.shapes.valid_ip)."""
    return valid_ip(as_text(value, 64))


def _zip(value: Any) -> str | None:
    # Every postal code system that has codes uses digits; placeholders have none.
    text = as_text(value, 20)
    return text if text and any(ch.isdigit() for ch in text) else None


def identity(payload: dict[str, Any], customer: dict[str, Any] | None = None) -> RawIdentity:
    """Raw identifiers of an order, checkout or customer payload (hashed later, in one place)."""
    customer = as_obj(payload.get("customer")) if customer is None else customer
    billing = as_obj(payload.get("billing_address"))
    shipping = as_obj(payload.get("shipping_address"))
    default = as_obj(customer.get("default_address"))
    addresses = [a for a in (billing, shipping, default) if a]
    # A person's names and location come from one address (billing, else shipping, else the customer's
    # default), never mixed: the customer's names only when that address carries none.
    address = addresses[0] if addresses else {}
    named = address if any(as_text(address.get(k), 256) for k in ("first_name", "last_name")) else customer
    order_country = _country(billing.get("country_code")) or _country(shipping.get("country_code"))
    ttclid, ttp = click_ids(payload)
    client = as_obj(payload.get("client_details"))

    def first(*values: Any) -> str | None:
        return next((t for v in values if (t := as_text(v, 256))), None)

    return RawIdentity(
        emails=[as_text(payload.get("email"), 320), as_text(payload.get("contact_email"), 320),
                as_text(customer.get("email"), 320)],
        phones=[(as_text(payload.get("phone"), 64), order_country),
                (as_text(customer.get("phone"), 64), order_country or _country(default.get("country_code"))),
                *[(as_text(a.get("phone"), 64), _country(a.get("country_code"))) for a in addresses]],
        external_ids=[as_id(customer.get("id"))],
        first_name=first(named.get("first_name")),
        last_name=first(named.get("last_name")),
        zip_code=_zip(address.get("zip")),
        city=as_text(address.get("city"), 100),
        state=_matching(address.get("province_code"), _PROVINCE),
        country=_country(address.get("country_code")),
        ttclid=ttclid,
        ttp=ttp,
        ip=_ip(payload.get("browser_ip")) or _ip(client.get("browser_ip")),
        user_agent=as_text(client.get("user_agent"), 1024),
        locale=as_text(payload.get("customer_locale"), 100),  # its shape is build_user's to check, and count
    )  # fmt: skip


def _content_id(item: dict[str, Any], choice: str) -> str | None:
    """The line's id as the shop chose it; a variant id falls back to the product's (custom lines have neither)."""
    chosen = as_text(item.get(choice), 256)
    if chosen is None and choice == "variant_id":
        return as_text(item.get("product_id"), 256)
    return chosen


def properties(payload: dict[str, Any], shop: ShopifyShopConfig, order_id: str | None) -> dict[str, Any]:
    """TikTok properties of an order or checkout: value, currency, contents, ids."""
    value, currency = _amount_and_currency(payload, "total_price", "currency", shop.currency)
    contents = []
    for item in as_dicts(payload.get("line_items"))[:_MAX_CONTENTS]:
        price, _ = _amount_and_currency(item, "price", "currency", shop.currency)
        content: dict[str, Any] = {
            "content_id": _content_id(item, shop.content_id),
            # A custom item's title is typed by a person: scrubbed like every free text forwarded.
            "content_name": scrub_text(title) if (title := as_text(item.get("title"), 512)) else None,
            "price": price,
            "quantity": _int(item.get("quantity")),
            "brand": as_text(item.get("vendor"), 256),
        }
        contents.append({k: v for k, v in content.items() if v is not None})
    quantities = [c["quantity"] for c in contents if "quantity" in c]
    result = {
        # Value only with its currency: a bare number means nothing to TikTok.
        "value": value if currency else None,
        "currency": currency,
        # A product id names a product with all its variants: TikTok's product_group.
        "content_type": "product_group" if shop.content_id == "product_id" else "product",
        "contents": contents,
        "num_items": sum(quantities) if quantities else None,
        "order_id": order_id,
        "shop_id": shop.domain,
    }
    return {k: v for k, v in result.items() if v is not None and v != []}


def join_keys(payload: dict[str, Any], checkout_field: str = "checkout_token") -> list[tuple[str, str]]:
    """Where the collect endpoint may have stored the click: checkout, then cart, then customer."""
    keys = [
        (CHECKOUT.name, as_text(payload.get(checkout_field), 200)),
        (CART.name, as_text(payload.get("cart_token"), 200)),
        (JOIN_CUSTOMER, as_id(as_obj(payload.get("customer")).get("id"))),
    ]
    return [(kind, value) for kind, value in keys if value]


def skip_reason(payload: dict[str, Any], shop: ShopifyShopConfig) -> tuple[str, str] | None:
    """(rule, reason) when the shop's settings exclude this order, else None."""
    if payload.get("test") is True and not shop.include_test_orders:
        return "test_order", "test order (include_test_orders is off)"
    source = as_text(payload.get("source_name"), 100) or ""
    rule, setting = _SKIPPED_SOURCES.get(source, (None, None))
    if rule and setting and not getattr(shop, setting):
        return rule, f"source_name {source!r} ({setting} is off)"
    return None

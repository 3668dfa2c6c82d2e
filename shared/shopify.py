"""Shopify webhooks: authenticate, route by topic, map to an order event, act once.

The steps, each a plain function:

1. :meth:`Delivery.from_headers` reads the ``X-Shopify-*`` headers;
2. :func:`authenticate` finds the shop (``X-Shopify-Shop-Domain``) and checks
   the HMAC against its secrets; nothing else happens to a request that fails;
3. :func:`plan` (pure) turns (topic, payload, shop settings) into an action:
   an :class:`~shared.receive.orders.OrderEvent` to send, an order change to record, a
   privacy request to carry out, or a final :class:`~shared.outcome.Outcome`
   (skipped, ignored, rejected). Shopify signs the body only, so a signed body
   is also checked to be one of its topic (:func:`shape_problem`) and, for
   order topics, recent (:func:`stale_delivery` by X-Shopify-Triggered-At,
   :func:`age_problem` by its own timestamps): a captured body re-sent under
   another topic, or after our records expired, is refused;
4. :func:`execute` carries the action out through the Store and the publisher;
5. :func:`handle` ties them together and turns the outcome into an HTTP reply.
   Everything after step 2 is :func:`handle_verified`, which the Pub/Sub
   delivery method (:mod:`shared.shopify_pubsub`, authenticated by IAM) enters too.

No delivery id is claimed: every effect is idempotent on its own natural key
(the sender's claim on the order event's deterministic event_id, see
:mod:`shared.receive.orders`; the record claims of cancellations and refunds;
deletions and acknowledgements repeat harmlessly), so a redelivery,
concurrent or after a timeout or crash at any step, completes the work or
repeats it harmlessly. A permanent claim taken before the work would instead
outlive a failed attempt and swallow Shopify's retry of an order never published.

Reply rule: 401 when the sender is not proven to be the shop; 200 for every
authenticated delivery, even one we cannot use (any other answer only makes
Shopify retry the same bytes eight times and then delete the subscription);
503 only when our own storage or Pub/Sub failed, so the retry can succeed.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from shared.config import ShopifySettings, ShopifyShopConfig, Tenants
from shared.domain.events import order_event_id, shop_key
from shared.domain.hashing import sha256_hex
from shared.domain.identity import RawIdentity, valid_ip
from shared.domain.models import Properties
from shared.domain.scrub import looks_like_pii, scrub_url
from shared.domain.untrusted import UnsafeInput, parse_json
from shared.infra import log
from shared.infra.deadline import BoundedProxy, Deadline
from shared.infra.pubsub import publisher_from_settings
from shared.infra.store import CLICK_CONTEXTS, EVENT_CLAIMS, ORDER_EVENTS, WEBHOOK_DELIVERIES, store_from_settings
from shared.outcome import Outcome
from shared.receive.orders import (
    JOIN_CUSTOMER,
    JOIN_SHOPIFY_CART,
    JOIN_SHOPIFY_CHECKOUT,
    MAX_EVENT_AGE,
    ORDER_EVENT_TTL,
    OrderEvent,
    block_purchase,
    process_order_event,
    record_outcome,
)
from shared.receive.signatures import verify_hmac_base64

PLATFORM = "shopify"
# Shopify waits 5 s for an answer: every Firestore and Pub/Sub call of a delivery shares this
# budget, so a slow dependency becomes a 503 that Shopify retries, not a timeout it counts.
IO_SECONDS = 4.0
# Defaults of SHOPIFY_MAX_ORDER_AGE_DAYS and SHOPIFY_MAX_BODY_BYTES (see shared.config).
MAX_ORDER_AGE = dt.timedelta(days=7)
MAX_BODY_BYTES = 4_194_304

ORDERS_CREATE = "orders/create"
ORDERS_PAID = "orders/paid"
ORDERS_CANCELLED = "orders/cancelled"
REFUNDS_CREATE = "refunds/create"
CHECKOUTS_CREATE = "checkouts/create"
CUSTOMERS_CREATE = "customers/create"
CUSTOMERS_DATA_REQUEST = "customers/data_request"
CUSTOMERS_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"

# Record name of a cancellation (its tombstone on the Purchase is shared.receive.orders.block_purchase).
CANCELLED_RECORD = "cancelled"

# Note attributes our storefront snippet writes (cart attributes end up there).
_TTCLID_ATTRIBUTES = ("_ttclid", "ttclid")
_TTP_ATTRIBUTES = ("_ttp", "ttp")
# source_name -> (rule logged, the shop setting that includes such orders)
_SKIPPED_SOURCES = {
    "pos": ("pos_order", "include_pos_orders"),
    "shopify_draft_order": ("draft_order", "include_draft_orders"),
}

_MIN_EVENT_TIME = 1_420_070_400  # 2015-01-01: TikTok refuses older events
_MAX_FUTURE_SECONDS = 86_400
_CURRENCY_ANY_CASE = re.compile(r"^[A-Za-z]{3}$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_PROVINCE = re.compile(r"^[A-Za-z0-9]{1,3}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_CLICK_ID = re.compile(r"^[\x21-\x7e]{1,500}$")  # printable ASCII, no spaces
_DIGITS = re.compile(r"^[0-9]{1,30}$")
_MAX_CONTENTS = 500


# --- the delivery -----------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What the ``X-Shopify-*`` headers say about one delivery."""

    shop_domain: str = ""
    topic: str = ""
    hmac: str | None = None
    webhook_id: str | None = None
    event_id: str | None = None
    api_version: str | None = None
    triggered_at: str | None = None
    # "https" (authenticated by the HMAC) or "pubsub" (by IAM: see shared.shopify_pubsub).
    via: str = "https"

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], via: str = "https") -> Delivery:
        lower = {str(k).lower(): str(v).strip() for k, v in headers.items()}

        def get(name: str) -> str | None:
            return lower.get(name.lower()) or None

        return cls(
            shop_domain=(get("X-Shopify-Shop-Domain") or "")[:255],
            topic=normalize_topic(get("X-Shopify-Topic") or ""),
            hmac=get("X-Shopify-Hmac-Sha256"),
            webhook_id=(get("X-Shopify-Webhook-Id") or "")[:200] or None,
            event_id=(get("X-Shopify-Event-Id") or "")[:200] or None,
            api_version=(get("X-Shopify-API-Version") or "")[:20] or None,
            triggered_at=(get("X-Shopify-Triggered-At") or "")[:40] or None,
            via=via,
        )

    @property
    def delivery_id(self) -> str | None:
        """The dedup key Shopify recommends: the event id, else the webhook id."""
        return self.event_id or self.webhook_id

    def log_fields(self) -> dict[str, Any]:
        return {
            "platform": PLATFORM,
            "shop": self.shop_domain,
            "topic": self.topic,
            "delivery_id": self.delivery_id,
            "api_version": self.api_version,
            "via": self.via,
        }


def normalize_topic(topic: str) -> str:
    """``orders/paid`` as is; the GraphQL enum spelling ``ORDERS_PAID`` mapped to it."""
    text = topic.strip().lower()[:100]
    if "/" not in text and "_" in text:
        text = text.replace("_", "/", 1)
    return text


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


# --- pure helpers on untrusted JSON ------------------------------------------


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _text(value: Any, limit: int = 2048) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def _id(value: Any) -> str | None:
    """A Shopify numeric id, written exactly: an int, or a string of digits (never a float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        return value.strip()
    return None


def _amount(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return float(amount) if amount.is_finite() and amount >= 0 else None


def _matching(value: Any, pattern: re.Pattern[str]) -> str | None:
    """The text if it matches ``pattern`` whole (checked before any truncation)."""
    text = _text(value, 100)
    return text if text and pattern.match(text) else None


def _currency(value: Any) -> str | None:
    text = _matching(value, _CURRENCY_ANY_CASE)
    return text.upper() if text else None


def _country(value: Any) -> str | None:
    text = _matching(value, _COUNTRY)
    return text.upper() if text else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        return int(value.strip())
    return None


def _money(
    document: dict[str, Any], amount_field: str, currency_field: str, choice: str
) -> tuple[float | None, str | None]:
    """(amount, currency) from ``<amount_field>_set`` in the chosen currency, else the plain fields.

    The plain amount fields are in the shop's currency, so the fallback pairs
    them with ``currency`` (never with ``presentment_currency``).
    """
    money_set = _obj(document.get(amount_field + "_set"))
    chosen = _obj(money_set.get("presentment_money" if choice == "presentment" else "shop_money"))
    amount, currency = _amount(chosen.get("amount")), _currency(chosen.get("currency_code"))
    if amount is not None and currency:
        return amount, currency
    return _amount(document.get(amount_field)), _currency(document.get(currency_field))


def _seconds(value: Any) -> int | None:
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


def _timestamp(*candidates: Any, fallback: int) -> int:
    """Unix seconds of the first parseable ISO 8601 candidate within TikTok's range, else ``fallback``."""
    for candidate in candidates:
        seconds = _seconds(candidate)
        if seconds is not None and _MIN_EVENT_TIME <= seconds <= fallback + _MAX_FUTURE_SECONDS:
            return seconds
    return fallback


def _absolute_url(value: Any, shop_domain: str) -> str | None:
    """``landing_site`` is usually a path: prefix it with the shop's domain. Placeholders are dropped."""
    text = _text(value)
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
    if isinstance(value, dict):
        pairs = value.items()
    else:
        pairs = ((item.get("name"), item.get("value")) for item in _dicts(value))
    return {str(name).strip().lower(): text for name, raw in pairs if name and (text := _text(raw, 600))}


def _click_id(value: str | None) -> str | None:
    # Note attributes are free text a storefront script (or a shopper) wrote: an email or
    # phone number there is no click id and must not travel as one, unhashed.
    return value if value and _CLICK_ID.match(value) and not looks_like_pii(value) else None


def click_ids(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """(ttclid, ttp) from the order itself: note attributes first, then the landing page's query."""
    attributes = _attributes(payload.get("note_attributes"))
    ttclid = next((c for name in _TTCLID_ATTRIBUTES if (c := _click_id(attributes.get(name)))), None)
    ttp = next((c for name in _TTP_ATTRIBUTES if (c := _click_id(attributes.get(name)))), None)
    if not ttclid:
        landing = _text(payload.get("landing_site")) or ""
        query = parse_qs(urlsplit(landing).query)
        ttclid = next((c for value in query.get("ttclid", []) if (c := _click_id(value.strip()))), None)
    return ttclid, ttp


def _locale(value: Any) -> str | None:
    text = _matching(value, _LOCALE)
    return text if text and len(text) <= 35 else None


def _ip(value: Any) -> str | None:
    """An address a browser could have had (see shared.domain.identity.valid_ip)."""
    return valid_ip(_text(value, 64))


def _zip(value: Any) -> str | None:
    # Every postal code system that has codes uses digits; placeholders have none.
    text = _text(value, 20)
    return text if text and any(ch.isdigit() for ch in text) else None


def identity(payload: dict[str, Any], customer: dict[str, Any] | None = None) -> RawIdentity:
    """Raw identifiers of an order, checkout or customer payload (hashed later, in one place)."""
    customer = _obj(payload.get("customer")) if customer is None else customer
    billing = _obj(payload.get("billing_address"))
    shipping = _obj(payload.get("shipping_address"))
    default = _obj(customer.get("default_address"))
    addresses = [a for a in (billing, shipping, default) if a]
    # Location fields come from one address (the first there is), never mixed.
    address = addresses[0] if addresses else {}
    order_country = _country(billing.get("country_code")) or _country(shipping.get("country_code"))
    ttclid, ttp = click_ids(payload)
    client = _obj(payload.get("client_details"))

    def first(*values: Any) -> str | None:
        return next((t for v in values if (t := _text(v, 256))), None)

    return RawIdentity(
        emails=[_text(payload.get("email"), 320), _text(payload.get("contact_email"), 320),
                _text(customer.get("email"), 320)],
        phones=[(_text(payload.get("phone"), 64), order_country),
                (_text(customer.get("phone"), 64), order_country or _country(default.get("country_code"))),
                *[(_text(a.get("phone"), 64), _country(a.get("country_code"))) for a in addresses]],
        external_ids=[_id(customer.get("id"))],
        first_name=first(customer.get("first_name"), *(a.get("first_name") for a in addresses)),
        last_name=first(customer.get("last_name"), *(a.get("last_name") for a in addresses)),
        zip_code=_zip(address.get("zip")),
        city=_text(address.get("city"), 100),
        state=_matching(address.get("province_code"), _PROVINCE),
        country=_country(address.get("country_code")),
        ttclid=ttclid,
        ttp=ttp,
        ip=_ip(payload.get("browser_ip")) or _ip(client.get("browser_ip")),
        user_agent=_text(client.get("user_agent"), 1024),
        locale=_locale(payload.get("customer_locale")),
    )  # fmt: skip


def properties(payload: dict[str, Any], shop: ShopifyShopConfig, order_id: str | None) -> dict[str, Any]:
    """TikTok properties of an order or checkout: value, currency, contents, ids."""
    value, currency = _money(payload, "total_price", "currency", shop.currency)
    contents = []
    for item in _dicts(payload.get("line_items"))[:_MAX_CONTENTS]:
        price, _ = _money(item, "price", "currency", shop.currency)
        content = {
            "content_id": _text(item.get(shop.content_id), 256),
            "content_name": _text(item.get("title"), 512),
            "price": price,
            "quantity": _int(item.get("quantity")),
            "brand": _text(item.get("vendor"), 256),
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
        (JOIN_SHOPIFY_CHECKOUT, _text(payload.get(checkout_field), 200)),
        (JOIN_SHOPIFY_CART, _text(payload.get("cart_token"), 200)),
        (JOIN_CUSTOMER, _id(_obj(payload.get("customer")).get("id"))),
    ]
    return [(kind, value) for kind, value in keys if value]


def skip_reason(payload: dict[str, Any], shop: ShopifyShopConfig) -> tuple[str, str] | None:
    """(rule, reason) when the shop's settings exclude this order, else None."""
    if payload.get("test") is True and not shop.include_test_orders:
        return "test_order", "test order (include_test_orders is off)"
    source = _text(payload.get("source_name"), 100) or ""
    rule, setting = _SKIPPED_SOURCES.get(source, (None, None))
    if rule and setting and not getattr(shop, setting):
        return rule, f"source_name {source!r} ({setting} is off)"
    return None


# --- actions ------------------------------------------------------------------


@dataclass(frozen=True)
class SendEvent:
    order: OrderEvent


@dataclass(frozen=True)
class RecordOrderChange:
    """A cancellation or refund: recorded in Firestore, never a second Purchase."""

    order_id: str
    record: str  # "cancelled" or "refund-<id>"
    fields: dict[str, Any] = field(default_factory=dict)
    # A cancellation takes the Purchase's claim if nobody did yet: a late
    # orders/paid retry (carrying the pre-cancellation payload) then sends nothing.
    blocks_purchase: bool = False


@dataclass(frozen=True)
class RedactCustomer:
    customer_id: str | None
    order_ids: list[str]


@dataclass(frozen=True)
class RedactShop:
    pass


Action = SendEvent | RecordOrderChange | RedactCustomer | RedactShop | Outcome


def _rejected(reason: str, **details: Any) -> Outcome:
    return Outcome("rejected", reason, details=details)


def _order_event(
    payload: dict[str, Any],
    shop: ShopifyShopConfig,
    event: str,
    record_id: str,
    *,
    received_at: int,
    triggered_at: str | None,
    order_id: str | None,
    event_time_fields: tuple[str, ...],
    identity_customer: dict[str, Any] | None = None,
    keys: list[tuple[str, str]] | None = None,
) -> OrderEvent:
    props = properties(payload, shop, order_id)
    Properties.model_validate(props)  # fail here, as content, never later as an I/O error
    return OrderEvent(
        platform=PLATFORM,
        shop=shop.domain,
        order_id=record_id,
        event=event,
        event_time=_timestamp(*(payload.get(f) for f in event_time_fields), triggered_at, fallback=received_at),
        identity=identity(payload, identity_customer),
        properties=props,
        page_url=public_url(payload.get("landing_site"), shop.domain),
        referrer=public_url(payload.get("referring_site"), shop.domain),
        join_keys=join_keys(payload) if keys is None else keys,
    )


def _plan_order(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    order_id = _id(payload.get("id"))
    if order_id is None:
        return _rejected("order payload without a numeric id (field 'id')")
    event_id = order_event_id(PLATFORM, shop.domain, order_id, "Purchase")
    skipped = skip_reason(payload, shop)
    if skipped:
        return Outcome("skipped", skipped[1], event_id, {"rule": skipped[0], "order_id": order_id})
    if payload.get("cancelled_at"):
        return Outcome("skipped", "order already cancelled", event_id, {"rule": "cancelled", "order_id": order_id})
    paid = _text(payload.get("financial_status")) == "paid"
    if topic == ORDERS_CREATE and shop.purchase_topic != ORDERS_CREATE and not paid:
        return Outcome(
            "ignored",
            "orders/create of an unpaid order: the Purchase waits for orders/paid (purchase_topic)",
            event_id,
            {"order_id": order_id},
        )
    order = _order_event(
        payload, shop, "Purchase", order_id, order_id=order_id,
        event_time_fields=("processed_at", "created_at"), **when,
    )  # fmt: skip
    return SendEvent(order)


def _plan_checkout(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    # The token, not the numeric id: the storefront's checkout_started event knows the token.
    token = _text(payload.get("token"), 200)
    if not token:
        return _rejected("checkout payload without a token (field 'token')")
    skipped = skip_reason(payload, shop)
    if skipped:
        return Outcome("skipped", skipped[1], details={"rule": skipped[0]})
    order = _order_event(
        payload, shop, "InitiateCheckout", f"checkout-{token}", order_id=None,
        event_time_fields=("created_at",), keys=join_keys(payload, "token"), **when,
    )  # fmt: skip
    return SendEvent(order)


def _plan_customer(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    customer_id = _id(payload.get("id"))
    if customer_id is None:
        return _rejected("customer payload without a numeric id (field 'id')")
    order = _order_event(
        payload, shop, "CompleteRegistration", f"customer-{customer_id}", order_id=None,
        event_time_fields=("created_at",), identity_customer=payload,
        keys=[(JOIN_CUSTOMER, customer_id)], **when,
    )  # fmt: skip
    return SendEvent(order)


def _plan_cancelled(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    order_id = _id(payload.get("id"))
    if order_id is None:
        return _rejected("order payload without a numeric id (field 'id')")
    skipped = skip_reason(payload, shop)
    if skipped:
        return Outcome("skipped", skipped[1], details={"rule": skipped[0], "order_id": order_id})
    fields = {"kind": "cancelled", "cancel_reason": _text(payload.get("cancel_reason"), 40)}
    return RecordOrderChange(order_id, CANCELLED_RECORD, fields, blocks_purchase=True)


def _plan_refund(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    order_id, refund_id = _id(payload.get("order_id")), _id(payload.get("id"))
    if order_id is None or refund_id is None:
        return _rejected("refund payload without numeric 'id' and 'order_id'")
    total, currencies = Decimal(0), set()
    for transaction in _dicts(payload.get("transactions")):
        amount = _amount(transaction.get("amount"))
        if transaction.get("kind") == "refund" and transaction.get("status") == "success" and amount is not None:
            total += Decimal(str(transaction.get("amount")).strip())
            currencies.add(_currency(transaction.get("currency")))
    fields = {
        "kind": "refund",
        "refund_id": refund_id,
        "amount": str(total),
        "currency": currencies.pop() if len(currencies) == 1 else None,
    }
    return RecordOrderChange(order_id, f"refund-{refund_id}", fields)


def _plan_data_request(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    orders = payload.get("orders_requested")
    return Outcome(
        "recorded",
        "customer data request acknowledged: we keep no raw personal data, only hashed identifiers "
        "and click ids in click contexts that expire",
        details={
            "data_request_id": _id(_obj(payload.get("data_request")).get("id")),
            "orders_requested": len(orders) if isinstance(orders, list) else 0,
        },
    )


def _plan_customer_redact(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    customer_id = _id(_obj(payload.get("customer")).get("id"))
    listed = payload.get("orders_to_redact")
    order_ids = [o for item in listed if (o := _id(item))] if isinstance(listed, list) else []
    if customer_id is None and not order_ids:
        return _rejected("customers/redact without customer.id or orders_to_redact")
    return RedactCustomer(customer_id, order_ids)


def _plan_shop_redact(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    return RedactShop()


_PLANNERS: dict[str, Callable[..., Action]] = {
    ORDERS_CREATE: _plan_order,
    ORDERS_PAID: _plan_order,
    ORDERS_CANCELLED: _plan_cancelled,
    REFUNDS_CREATE: _plan_refund,
    CHECKOUTS_CREATE: _plan_checkout,
    CUSTOMERS_CREATE: _plan_customer,
    CUSTOMERS_DATA_REQUEST: _plan_data_request,
    CUSTOMERS_REDACT: _plan_customer_redact,
    SHOP_REDACT: _plan_shop_redact,
}
TOPICS = frozenset(_PLANNERS)
PRIVACY_TOPICS = frozenset({CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT, SHOP_REDACT})
# The resource each topic's body is; genuine bodies of these carry it in admin_graphql_api_id.
_RESOURCE = {
    ORDERS_CREATE: "Order", ORDERS_PAID: "Order", ORDERS_CANCELLED: "Order",
    REFUNDS_CREATE: "Refund", CUSTOMERS_CREATE: "Customer",
}  # fmt: skip
_GID = re.compile(r"^gid://shopify/([A-Za-z]{1,64})/")
# Signed timestamps of a body, in the order a change moves them (updated_at follows every change).
_SIGNED_TIMES = ("updated_at", "processed_at", "created_at")


def parse_payload(body: bytes) -> dict[str, Any] | Outcome:
    """The JSON object in ``body`` (ints stay exact), or the rejection that says why not.

    The body is signed, so Shopify would only retry the same bytes: a lone
    surrogate in a free-text field is replaced rather than losing the order,
    and structurally hostile JSON (deep nesting, giant numbers) is a rejection.
    """
    try:
        payload = parse_json(body, surrogates="replace")
    except UnsafeInput as exc:  # its reason never quotes the input
        return _rejected("body is not valid JSON", detail=exc.reason)
    if not isinstance(payload, dict):
        return _rejected(f"body is JSON {type(payload).__name__}, expected an object")
    return payload


def _resource(payload: dict[str, Any]) -> str | None:
    """The resource type named by ``admin_graphql_api_id`` (``gid://shopify/Order/1`` -> Order)."""
    value = payload.get("admin_graphql_api_id")
    match = _GID.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def shape_problem(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig) -> str | None:
    """Why ``payload`` is not a body of ``topic`` for ``shop``, or None.

    The HMAC proves the shop wrote the bytes, not under which topic: the
    ``X-Shopify-Topic`` header is unsigned. So each topic's effect requires a
    body only that topic sends: an order is never a cancellation, a refund or a
    privacy request.
    """
    resource, expected = _resource(payload), _RESOURCE.get(topic)
    if resource and expected and resource != expected:
        return f"a {resource} body is not a {topic} body"
    if topic == CHECKOUTS_CREATE and resource in _RESOURCE.values():
        return f"a {resource} body is not a {topic} body"
    if expected == "Order" and resource is None and "order_number" not in payload:
        return f"{topic} body is not an order (neither an Order admin_graphql_api_id nor an order_number)"
    if topic == ORDERS_CANCELLED and not payload.get("cancelled_at"):
        return "orders/cancelled body without cancelled_at: the order it holds is not cancelled"
    if topic in PRIVACY_TOPICS:
        named = payload.get("shop_domain")
        if not isinstance(named, str) or shop_key(named[:255]) != shop.domain:
            return f"{topic} body does not name this shop in shop_domain"
        if topic == SHOP_REDACT and "customer" in payload:  # a customer's redaction must never erase the shop
            return "shop/redact body names a customer: it is a customer's request, not the shop's"
        if topic != SHOP_REDACT and not isinstance(payload.get("customer"), dict):
            return f"{topic} body without a customer"
        if topic == CUSTOMERS_REDACT and not isinstance(payload.get("orders_to_redact"), list):
            return "customers/redact body without orders_to_redact"
    return None


def signed_time(payload: dict[str, Any]) -> int | None:
    """The newest of the body's own timestamps (unix seconds): when Shopify last wrote it."""
    times = [t for name in _SIGNED_TIMES if (t := _seconds(payload.get(name))) is not None]
    return max(times) if times else None


def age_problem(payload: dict[str, Any], received_at: int, max_age: dt.timedelta) -> Outcome | None:
    """The rejection of a body older than ``max_age`` (or with no signed time at all), else None.

    X-Shopify-Triggered-At is not signed and so cannot vouch for a body's age;
    the body's own updated_at/processed_at/created_at can. A genuine delivery,
    retries included, is at most a day or so old; an older one is a replay.
    """
    written = signed_time(payload)
    if written is None:
        return _rejected("body has no signed timestamp (updated_at, processed_at, created_at): may be a replay")
    age = received_at - written
    if age > max_age.total_seconds():
        return _rejected(
            f"body is older than {max_age.days} days (SHOPIFY_MAX_ORDER_AGE_DAYS): refused as a replay",
            age_seconds=age, max_age_seconds=int(max_age.total_seconds()),
        )  # fmt: skip
    return None


def stale_delivery(triggered_at: str | None, received_at: int, max_age: dt.timedelta) -> Outcome | None:
    """The rejection of a delivery whose X-Shopify-Triggered-At is older than ``max_age``, else None.

    Over Pub/Sub the attribute is Shopify's own (only Shopify may publish on the
    topic), and a message can wait there for days while the function fails:
    past TikTok's attribution window such an order would only be counted late.
    Over HTTPS the header is unsigned, so it can only ever refuse a delivery,
    never vouch for one: :func:`age_problem` still checks the body's signed times.
    A missing or unreadable value refuses nothing.
    """
    triggered = _seconds(triggered_at)
    if triggered is None:
        return None
    age = received_at - triggered
    if age <= max_age.total_seconds():
        return None
    return _rejected(
        f"delivery triggered more than {max_age.days} days ago (X-Shopify-Triggered-At, SHOPIFY_MAX_ORDER_AGE_DAYS): "
        "refused as stale",
        age_seconds=age, max_age_seconds=int(max_age.total_seconds()),
    )  # fmt: skip


def plan(
    topic: str,
    payload: dict[str, Any],
    shop: ShopifyShopConfig,
    *,
    received_at: int,
    triggered_at: str | None = None,
    max_age: dt.timedelta | None = None,
) -> Action:
    """Pure: what to do with one authenticated delivery.

    ``max_age`` bounds how old a non-privacy delivery may be, by its
    X-Shopify-Triggered-At and by its body's own timestamps (None: unbounded,
    for mapping historic samples); the webhook always passes its setting.
    """
    planner = _PLANNERS.get(topic)
    if planner is None:
        return Outcome("ignored", f"topic {topic or '(none)'!r} is not handled")
    try:
        action = planner(topic, payload, shop, received_at=received_at, triggered_at=triggered_at)
    except Exception as exc:  # content we cannot map: say so (200) rather than have Shopify retry it (5xx)
        return _rejected(f"{topic} payload could not be mapped: {_describe(exc)}", error=type(exc).__name__)
    if isinstance(action, Outcome) and action.kind == "rejected":
        return action
    problem = shape_problem(topic, payload, shop)
    if problem:
        return _rejected(problem)
    if max_age is not None and topic not in PRIVACY_TOPICS:
        stale = stale_delivery(triggered_at, received_at, max_age)
        return stale or age_problem(payload, received_at, max_age) or action
    return action


def _describe(exc: Exception) -> str:
    """The failing fields of a validation error, else the error's type (messages may quote shopper data)."""
    if isinstance(exc, ValidationError):
        return "invalid " + ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False))
    return type(exc).__name__


# --- I/O ----------------------------------------------------------------------


class _TaggedStore:
    """The Store, writing ``shop`` and ``order_ref`` on every claim so privacy webhooks can find them."""

    def __init__(self, store: Any, **tags: Any) -> None:
        self._store = store
        self._tags = tags

    def claim_once(self, collection: str, key: Any, ttl: dt.timedelta, **fields: Any) -> bool:
        return self._store.claim_once(collection, key, ttl, **{**fields, **self._tags})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def order_ref(shop_domain: str, order_id: str) -> str:
    return f"{PLATFORM}:{shop_domain}:{order_id}"


def execute(action: Action, *, shop: ShopifyShopConfig, runtime: Runtime) -> Outcome:
    """Carry out ``action``; raises when Firestore or Pub/Sub fail (the caller answers 503)."""
    if isinstance(action, Outcome):
        return action
    store = runtime.store
    if isinstance(action, SendEvent):
        order = action.order
        tagged = _TaggedStore(store, shop=shop.domain, order_ref=order_ref(shop.domain, order.order_id))
        outcome = process_order_event(
            order,
            pixel=runtime.tenants.pixels[shop.pixel_code],
            policy=runtime.tenants.policy_for(shop.pixel_code, shop.consent_policy),
            store=tagged,
            publisher=runtime.publisher,
            default_region=runtime.default_region,
            max_event_age=runtime.max_event_age,
        )
        return outcome
    if isinstance(action, RecordOrderChange):
        return _record(action, shop, store)
    if isinstance(action, RedactCustomer):
        return _redact_customer(action, shop, store)
    return _redact_shop(shop, runtime)


def _record(action: RecordOrderChange, shop: ShopifyShopConfig, store: Any) -> Outcome:
    ref = order_ref(shop.domain, action.order_id)
    purchase_id = order_event_id(PLATFORM, shop.domain, action.order_id, "Purchase")
    details: dict[str, Any] = {"order_id": action.order_id, "record": action.record}
    if action.blocks_purchase:
        details["purchase_blocked"] = block_purchase(
            store, shop.pixel_code, purchase_id, source=PLATFORM, shop=shop.domain, order_ref=ref
        )
    fields = {k: v for k, v in action.fields.items() if v is not None}
    key = (PLATFORM, shop.domain, action.order_id, action.record)
    if not store.claim_once(ORDER_EVENTS, key, ORDER_EVENT_TTL, shop=shop.domain, order_ref=ref, **fields):
        return Outcome("duplicate", f"{action.record} already recorded", purchase_id, details)
    if action.blocks_purchase and details["purchase_blocked"]:
        reason = "order cancelled before any Purchase: recorded, and no Purchase will be sent for it"
    else:
        reason = f"{action.fields.get('kind', action.record)} recorded; TikTok has no such event, the Purchase stands"
    return Outcome("recorded", reason, purchase_id, details)


def _redact_customer(action: RedactCustomer, shop: ShopifyShopConfig, store: Any) -> Outcome:
    contexts = 0
    if action.customer_id:
        # The collect endpoint writes customer_key = sha256(customer id) on contexts it can tie to a customer.
        contexts = store.delete_where(CLICK_CONTEXTS, "customer_key", sha256_hex(action.customer_id))
    # Cancellations' tombstones on a Purchase live in event_claims (shared.receive.orders.block_purchase).
    records = sum(store.delete_where(collection, "order_ref", order_ref(shop.domain, o))
                  for o in action.order_ids for collection in (ORDER_EVENTS, EVENT_CLAIMS))  # fmt: skip
    return Outcome("redacted", "customer data deleted", details={"click_contexts": contexts, "order_records": records})


def _redact_shop(shop: ShopifyShopConfig, runtime: Runtime) -> Outcome:
    store, tenants = runtime.store, runtime.tenants
    details = {
        # Deliveries are no longer claimed, but databases deployed before hold such records until their TTL.
        "webhook_deliveries": store.delete_where(WEBHOOK_DELIVERIES, "shop", shop.domain),
        "order_records": store.delete_where(ORDER_EVENTS, "shop", shop.domain)
        + store.delete_where(EVENT_CLAIMS, "shop", shop.domain),
    }
    # Click contexts are stored per pixel; delete them only if no other shop or site uses the pixel.
    sharing = [d for d, s in tenants.shopify_shops.items() if s.pixel_code == shop.pixel_code and d != shop.domain]
    sharing += [w for w, s in tenants.woocommerce_sites.items() if s.pixel_code == shop.pixel_code]
    if sharing:
        details["click_contexts_kept"] = f"pixel shared with {len(sharing)} other shop(s); they expire by TTL"
    else:
        details["click_contexts"] = store.delete_where(CLICK_CONTEXTS, "pixel_code", shop.pixel_code)
    return Outcome("redacted", "shop data deleted", details=details)


class Runtime:
    """One instance's dependencies: tenants now, Firestore and Pub/Sub clients on first use."""

    def __init__(
        self,
        tenants: Tenants,
        *,
        default_region: str | None = "US",
        store: Any = None,
        publisher: Any = None,
        store_factory: Callable[[], Any] | None = None,
        publisher_factory: Callable[[], Any] | None = None,
        io_seconds: float = IO_SECONDS,
        max_order_age: dt.timedelta = MAX_ORDER_AGE,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_event_age: dt.timedelta = MAX_EVENT_AGE,
    ) -> None:
        self.tenants = tenants
        self.default_region = default_region
        self.io_seconds = io_seconds
        self.max_order_age = max_order_age
        self.max_event_age = max_event_age
        self.max_body_bytes = max_body_bytes
        self._store, self._publisher = store, publisher
        self._store_factory, self._publisher_factory = store_factory, publisher_factory
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        """Raises :class:`shared.config.ConfigError` naming the variable that is wrong."""
        settings = ShopifySettings.from_env(environ)
        log.set_level(settings.log_level)

        return cls(
            settings.tenants(),
            default_region=settings.default_phone_region,
            store_factory=lambda: store_from_settings(settings),
            publisher_factory=lambda: publisher_from_settings(settings),
            max_order_age=dt.timedelta(days=settings.max_order_age_days),
            max_body_bytes=settings.max_body_bytes,
            max_event_age=dt.timedelta(days=settings.max_event_age_days),
        )

    @property
    def store(self) -> Any:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._store_factory()  # type: ignore[misc]
        return self._store

    @property
    def publisher(self) -> Any:
        if self._publisher is None:
            with self._lock:
                if self._publisher is None:
                    self._publisher = self._publisher_factory()  # type: ignore[misc]
        return self._publisher


# --- the whole delivery ---------------------------------------------------------


def authenticate(delivery: Delivery, body: bytes, tenants: Tenants) -> ShopifyShopConfig | str:
    """The shop that provably sent ``body``, or why not (then nothing else may happen)."""
    if not delivery.shop_domain:
        return "missing X-Shopify-Shop-Domain header"
    shop = tenants.shopify_shop(delivery.shop_domain)
    if shop is None:
        return f"unknown shop {delivery.shop_domain!r}: not configured (SHOPIFY_SHOP_DOMAIN or PIPELINE_TENANTS)"
    if not delivery.hmac:
        return "missing X-Shopify-Hmac-Sha256 header"
    if not verify_hmac_base64(body, delivery.hmac, [s.get_secret_value() for s in shop.secrets]):
        return "X-Shopify-Hmac-Sha256 does not match the body for any of the shop's secrets"
    return shop


def _reply(outcome: Outcome) -> Reply:
    body = {"outcome": outcome.kind, "reason": outcome.reason}
    if outcome.event_id:
        body["event_id"] = outcome.event_id
    return Reply(200, body)


def handle(delivery: Delivery, body: bytes, runtime: Runtime, now: Callable[[], float] = time.time) -> Reply:
    """One HTTPS delivery, start to finish. Never raises: failures are 503s, bad content a 200 with its reason."""
    shop = authenticate(delivery, body, runtime.tenants)
    if isinstance(shop, str):
        log.outcome("rejected", shop, status=401, **delivery.log_fields())
        return Reply(401, {"error": "unauthorized", "reason": shop})
    return handle_verified(delivery, shop, body, runtime, now)


def handle_verified(
    delivery: Delivery,
    shop: ShopifyShopConfig,
    body: bytes,
    runtime: Runtime,
    now: Callable[[], float] = time.time,
    **log_fields: Any,
) -> Reply:
    """A delivery whose sender is proven to be ``shop`` (HMAC over HTTPS, IAM over Pub/Sub), to its reply.

    Both delivery methods end here, so topics, claims, click join, consent and
    privacy webhooks behave the same whichever way Shopify sent the body.
    """
    fields = {**delivery.log_fields(), **log_fields}
    payload = parse_payload(body)
    if isinstance(payload, Outcome):
        action: Action = payload
    else:
        action = plan(delivery.topic, payload, shop, received_at=int(now()), triggered_at=delivery.triggered_at,
                      max_age=runtime.max_order_age)  # fmt: skip
    if isinstance(action, Outcome):  # decided without any I/O
        if action.kind == "skipped":
            _record_skipped(action, shop, runtime)
        action.log(**fields)
        return _reply(action)
    try:
        io = _RequestIO(runtime, Deadline(runtime.io_seconds))  # makes the clients on first use: may fail
        outcome = execute(action, shop=shop, runtime=io)
    except Exception as exc:
        # The exception's type only: messages of some errors quote the data they refused. Whatever
        # part of the work landed is idempotent, so Shopify's retry completes it (shared.receive.orders).
        log.error("processing failed; Shopify will retry", error=type(exc).__name__, **fields)
        return Reply(503, {"error": "temporarily unavailable", "reason": "processing failed, retry later"})
    outcome.log(**fields)
    return _reply(outcome)


def _record_skipped(outcome: Outcome, shop: ShopifyShopConfig, runtime: Runtime) -> None:
    """A test, POS, draft or cancelled order's Purchase, remembered for the report; never fails the delivery."""
    order_id = outcome.details.get("order_id")
    if not outcome.event_id or not order_id:
        return
    try:
        io = _RequestIO(runtime, Deadline(runtime.io_seconds))
    except Exception as exc:
        log.warning("could not record the skipped order", error=type(exc).__name__, event_id=outcome.event_id)
        return
    tagged = _TaggedStore(io.store, shop=shop.domain, order_ref=order_ref(shop.domain, order_id))
    record_outcome(tagged, outcome, rule=outcome.details.get("rule"))


class _RequestIO:
    """The runtime as one delivery sees it: Firestore and Pub/Sub calls share the delivery's deadline."""

    def __init__(self, runtime: Runtime, deadline: Deadline) -> None:
        self._runtime = runtime
        self.store = BoundedProxy(runtime.store, "firestore", deadline)
        self.publisher = BoundedProxy(runtime.publisher, "pubsub", deadline)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

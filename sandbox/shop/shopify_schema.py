"""The slice of Shopify's GraphQL Admin schema the shop serves, and REST orders seen through it.

Types are data: each maps its field names to a :class:`FieldDef` (what the field returns, whether
it is a list or a connection sized by ``first``/``last``, which arguments it takes, the API
version that introduced it). A field without a resolver reads the key of its own name from the
parent value; objects are built as such dicts by :func:`order_node` and :func:`subscription_node`
from the REST webhook order the shop stores, so one stored order serves both APIs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.shop.shopify_search import parse_datetime

SCALAR = "scalar"
CONNECTION_ARGS = frozenset({"first", "after", "last", "before", "reverse"})
# Objects that cost nothing themselves: the connection plumbing (Shopify charges the connection 2).
FREE_TYPES = frozenset(
    {"OrderConnection", "OrderEdge", "LineItemConnection", "LineItemEdge", "PageInfo",
     "WebhookSubscriptionConnection", "WebhookSubscriptionEdge"}
)  # fmt: skip
UNIONS = {"WebhookEndpoint": ("WebhookHttpEndpoint", "WebhookEventBridgeEndpoint", "WebhookPubSubEndpoint")}
# REST financial_status -> GraphQL OrderDisplayFinancialStatus.
FINANCIAL_STATUS = {
    "pending": "PENDING",
    "authorized": "AUTHORIZED",
    "partially_paid": "PARTIALLY_PAID",
    "paid": "PAID",
    "partially_refunded": "PARTIALLY_REFUNDED",
    "refunded": "REFUNDED",
    "voided": "VOIDED",
    "expired": "EXPIRED",
}

Resolver = Callable[[Any, Mapping[str, Any], Any], Any]


@dataclass(frozen=True)
class FieldDef:
    type: str = SCALAR
    list: bool = False
    connection: bool = False
    args: frozenset[str] = frozenset()
    since: str | None = None  # first API version with the field ("2026-07")
    resolve: Resolver | None = None


def _f(type_: str = SCALAR, **options: Any) -> FieldDef:
    return FieldDef(type_, **options)


def _conn(type_: str, *extra: str, resolve: Resolver | None = None) -> FieldDef:
    return FieldDef(type_, connection=True, args=CONNECTION_ARGS | frozenset(extra), resolve=resolve)


def _names(*names: str, type_: str = SCALAR) -> dict[str, FieldDef]:
    return {name: FieldDef(type_) for name in names}


_MONEY = {"shopMoney": _f("MoneyV2"), "presentmentMoney": _f("MoneyV2")}
_ADDRESS = _names(
    "firstName", "lastName", "name", "company", "phone", "address1", "address2", "city", "province",
    "provinceCode", "zip", "country", "countryCodeV2",
)  # fmt: skip

TYPES: dict[str, dict[str, FieldDef]] = {
    "QueryRoot": {
        # Resolved by sandbox.shop.shopify_graphql, which holds the store.
        "orders": _conn("OrderConnection", "query", "sortKey", "savedSearchId"),
        "webhookSubscriptions": _conn("WebhookSubscriptionConnection", "query", "sortKey", "topics", "format", "uri"),
        "shop": _f("Shop"),
    },
    "Shop": _names("id", "name", "myshopifyDomain", "ianaTimezone", "currencyCode"),
    "OrderConnection": {
        "edges": _f("OrderEdge", list=True),
        "nodes": _f("Order", list=True),
        "pageInfo": _f("PageInfo"),
    },
    "OrderEdge": {"cursor": _f(), "node": _f("Order")},
    "PageInfo": _names("hasNextPage", "hasPreviousPage", "startCursor", "endCursor"),
    "Order": {
        **_names(
            "id",
            "legacyResourceId",
            "name",
            "createdAt",
            "updatedAt",
            "processedAt",
            "cancelledAt",
            "cancelReason",
            "closedAt",
            "closed",
            "test",
            "displayFinancialStatus",
            "displayFulfillmentStatus",
            "sourceName",
            "email",
            "phone",
            "note",
            "confirmed",
            "customerLocale",
            "clientIp",
            "currencyCode",
            "presentmentCurrencyCode",
            "tags",
            "sourceIdentifier",
            "confirmationNumber",
        ),  # fmt: skip
        "cartToken": _f(since="2026-07"),
        "checkoutToken": _f(since="2026-07"),
        "totalPriceSet": _f("MoneyBag"),
        "currentTotalPriceSet": _f("MoneyBag"),
        "subtotalPriceSet": _f("MoneyBag"),
        "totalRefundedSet": _f("MoneyBag"),
        "customer": _f("Customer"),
        "lineItems": _conn("LineItemConnection", resolve=lambda parent, args, ctx: line_item_connection(parent, args)),
        "customAttributes": _f("Attribute", list=True),
        "billingAddress": _f("MailingAddress"),
        "shippingAddress": _f("MailingAddress"),
        "customerJourneySummary": _f("CustomerJourneySummary"),
    },
    "MoneyBag": _MONEY,
    "MoneyV2": _names("amount", "currencyCode"),
    "Customer": _names("id", "legacyResourceId", "email", "phone", "firstName", "lastName", "displayName"),
    "Attribute": _names("key", "value"),
    "MailingAddress": _ADDRESS,
    "CustomerJourneySummary": {
        **_names("customerOrderIndex", "daysToConversion", "ready"),
        "firstVisit": _f("CustomerVisit"),
        "lastVisit": _f("CustomerVisit"),
    },
    "CustomerVisit": _names("id", "landingPage", "referrerUrl", "source", "sourceType", "occurredAt", "referralCode"),
    "LineItemConnection": {
        "edges": _f("LineItemEdge", list=True),
        "nodes": _f("LineItem", list=True),
        "pageInfo": _f("PageInfo"),
    },
    "LineItemEdge": {"cursor": _f(), "node": _f("LineItem")},
    "LineItem": {
        **_names("id", "title", "name", "sku", "quantity", "vendor", "variantTitle"),
        "variant": _f("ProductVariant"),
        "product": _f("Product"),
        "originalUnitPriceSet": _f("MoneyBag"),
        "customAttributes": _f("Attribute", list=True),
    },
    "ProductVariant": _names("id", "legacyResourceId", "sku", "title"),
    "Product": _names("id", "legacyResourceId", "title"),
    "WebhookSubscriptionConnection": {
        "edges": _f("WebhookSubscriptionEdge", list=True),
        "nodes": _f("WebhookSubscription", list=True),
        "pageInfo": _f("PageInfo"),
    },
    "WebhookSubscriptionEdge": {"cursor": _f(), "node": _f("WebhookSubscription")},
    "WebhookSubscription": {
        **_names("id", "legacyResourceId", "topic", "format", "createdAt", "updatedAt", "filter", "includeFields"),
        "uri": _f(since="2025-04"),
        "endpoint": _f("WebhookEndpoint"),
        "apiVersion": _f("ApiVersion"),
    },
    "WebhookHttpEndpoint": _names("callbackUrl"),
    "WebhookEventBridgeEndpoint": _names("arn"),
    "WebhookPubSubEndpoint": _names("pubSubProject", "pubSubTopic"),
    "ApiVersion": _names("handle", "displayName", "supported"),
}


def gid(kind: str, value: Any) -> str:
    return f"gid://shopify/{kind}/{value}"


def graphql_datetime(value: Any) -> str | None:
    parsed = parse_datetime(value)
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ") if parsed else None


def _money(amount: Any, currency: Any) -> dict[str, Any]:
    return {"amount": str(amount if amount not in (None, "") else "0.0"), "currencyCode": currency}


def _bag(order: Mapping[str, Any], set_key: str, amount_key: str) -> dict[str, Any] | None:
    money_set = order.get(set_key)
    if isinstance(money_set, Mapping):
        shop, presentment = money_set.get("shop_money") or {}, money_set.get("presentment_money") or {}
        return {
            "shopMoney": _money(shop.get("amount"), shop.get("currency_code")),
            "presentmentMoney": _money(presentment.get("amount"), presentment.get("currency_code")),
        }
    if order.get(amount_key) is None:
        return None
    currency = order.get("currency")
    return {
        "shopMoney": _money(order.get(amount_key), currency),
        "presentmentMoney": _money(order.get(amount_key), order.get("presentment_currency") or currency),
    }


def _address(address: Any) -> dict[str, Any] | None:
    if not isinstance(address, Mapping):
        return None
    keys = {"firstName": "first_name", "lastName": "last_name", "provinceCode": "province_code",
            "countryCodeV2": "country_code"}  # fmt: skip
    return {name: address.get(keys.get(name, name)) for name in _ADDRESS}


def _customer(customer: Any) -> dict[str, Any] | None:
    if not isinstance(customer, Mapping) or customer.get("id") is None:
        return None
    first, last = customer.get("first_name"), customer.get("last_name")
    return {
        "id": gid("Customer", customer["id"]),
        "legacyResourceId": str(customer["id"]),
        "email": customer.get("email"),
        "phone": customer.get("phone"),
        "firstName": first,
        "lastName": last,
        "displayName": " ".join(p for p in (first, last) if p) or customer.get("email"),
    }


def _journey(order: Mapping[str, Any], shop_domain: str) -> dict[str, Any] | None:
    landing = order.get("landing_site")
    if not landing:
        return None
    page = landing if "://" in str(landing) else f"https://{shop_domain}{landing}"
    visit = {
        "id": gid("CustomerVisit", order["id"]),
        "landingPage": page,
        "referrerUrl": order.get("referring_site"),
        "source": "an unknown source",
        "sourceType": None,
        "occurredAt": graphql_datetime(order.get("created_at")),
        "referralCode": None,
    }
    return {"customerOrderIndex": 0, "daysToConversion": 0, "ready": True, "firstVisit": visit, "lastVisit": visit}


def _line_item(item: Mapping[str, Any], currency: Any) -> dict[str, Any]:
    variant_id, product_id = item.get("variant_id"), item.get("product_id")
    return {
        "id": gid("LineItem", item.get("id")),
        "title": item.get("title"),
        "name": item.get("name"),
        "sku": item.get("sku"),
        "quantity": item.get("quantity"),
        "vendor": item.get("vendor"),
        "variantTitle": item.get("variant_title"),
        "variant": None
        if variant_id is None
        else {
            "id": gid("ProductVariant", variant_id),
            "legacyResourceId": str(variant_id),
            "sku": item.get("sku"),
            "title": item.get("variant_title"),
        },  # fmt: skip
        "product": None
        if product_id is None
        else {"id": gid("Product", product_id), "legacyResourceId": str(product_id), "title": item.get("title")},
        "originalUnitPriceSet": _bag({**item, "currency": currency}, "price_set", "price"),
        "customAttributes": [
            {"key": p.get("name"), "value": p.get("value")}
            for p in item.get("properties") or []
            if isinstance(p, Mapping)
        ],  # fmt: skip
        "_cursor_id": item.get("id"),
    }


def order_node(order: Mapping[str, Any], shop_domain: str) -> dict[str, Any]:
    """The stored REST order as the GraphQL ``Order`` fields this schema knows."""
    refunded = sum(
        float(t.get("amount") or 0)
        for refund in order.get("refunds") or []
        for t in (refund.get("transactions") or [])
        if t.get("kind") == "refund" and t.get("status") == "success"
    )
    currency = order.get("currency")
    return {
        "id": gid("Order", order["id"]),
        "legacyResourceId": str(order["id"]),
        "name": order.get("name"),
        "createdAt": graphql_datetime(order.get("created_at")),
        "updatedAt": graphql_datetime(order.get("updated_at")),
        "processedAt": graphql_datetime(order.get("processed_at")),
        "cancelledAt": graphql_datetime(order.get("cancelled_at")),
        "cancelReason": str(order["cancel_reason"]).upper() if order.get("cancel_reason") else None,
        "closedAt": graphql_datetime(order.get("closed_at")),
        "closed": bool(order.get("closed_at")),
        "test": bool(order.get("test")),
        "displayFinancialStatus": FINANCIAL_STATUS.get(str(order.get("financial_status"))),
        "displayFulfillmentStatus": "FULFILLED" if order.get("fulfillment_status") == "fulfilled" else "UNFULFILLED",
        "sourceName": order.get("source_name"),
        "sourceIdentifier": order.get("source_identifier"),
        "confirmationNumber": order.get("confirmation_number"),
        "email": order.get("email"),
        "phone": order.get("phone"),
        "note": order.get("note"),
        "confirmed": bool(order.get("confirmed", True)),
        "customerLocale": order.get("customer_locale"),
        "clientIp": order.get("browser_ip"),
        "cartToken": order.get("cart_token"),
        "checkoutToken": order.get("checkout_token"),
        "currencyCode": currency,
        "presentmentCurrencyCode": order.get("presentment_currency") or currency,
        "tags": [t.strip() for t in str(order.get("tags") or "").split(",") if t.strip()],
        "totalPriceSet": _bag(order, "total_price_set", "total_price"),
        "currentTotalPriceSet": _bag(order, "current_total_price_set", "current_total_price"),
        "subtotalPriceSet": _bag(order, "subtotal_price_set", "subtotal_price"),
        "totalRefundedSet": {
            "shopMoney": _money(f"{refunded:.2f}", currency),
            "presentmentMoney": _money(f"{refunded:.2f}", currency),
        },  # fmt: skip
        "customer": _customer(order.get("customer")),
        "customAttributes": [
            {"key": a.get("name"), "value": a.get("value")}
            for a in order.get("note_attributes") or []
            if isinstance(a, Mapping)
        ],  # fmt: skip
        "billingAddress": _address(order.get("billing_address")),
        "shippingAddress": _address(order.get("shipping_address")),
        "customerJourneySummary": _journey(order, shop_domain),
        "_lineItems": [_line_item(i, currency) for i in order.get("line_items") or [] if isinstance(i, Mapping)],
    }


def _item_cursor(item_id: Any) -> str:
    return base64.b64encode(json.dumps({"last_id": item_id}, separators=(",", ":")).encode()).decode()


def line_item_connection(order: Mapping[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
    items = list(order.get("_lineItems") or [])
    if args.get("reverse"):
        items.reverse()
    after = args.get("after")
    start = 0
    if isinstance(after, str):
        try:
            mark = json.loads(base64.b64decode(after.encode(), validate=True))["last_id"]
        except (ValueError, KeyError, TypeError):
            mark = None
        ids = [item["_cursor_id"] for item in items]
        start = ids.index(mark) + 1 if mark in ids else len(items)
    first = int(args.get("first") or args.get("last") or 0)
    page = items[start : start + first]
    return connection(page, [_item_cursor(i["_cursor_id"]) for i in page], start + first < len(items), start > 0)


def connection(nodes: list[Any], cursors: list[str], has_next: bool, has_previous: bool) -> dict[str, Any]:
    """A connection value: ``edges``, ``nodes`` and ``pageInfo`` as the schema reads them."""
    return {
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],
        "nodes": nodes,
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
    }


def subscription_node(subscription: Mapping[str, Any]) -> dict[str, Any]:
    """A stored subscription (see :class:`sandbox.shop.state.Subscription`) as ``WebhookSubscription``."""
    return {
        "id": gid("WebhookSubscription", subscription["id"]),
        "legacyResourceId": str(subscription["id"]),
        "topic": str(subscription["topic"]).upper().replace("/", "_"),
        "format": "JSON",
        "uri": subscription["uri"],
        "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": subscription["uri"]},
        "apiVersion": {
            "handle": subscription["api_version"],
            "displayName": subscription["api_version"],
            "supported": True,
        },  # fmt: skip
        "createdAt": graphql_datetime(subscription.get("created_at")),
        "updatedAt": graphql_datetime(subscription.get("created_at")),
        "filter": None,
        "includeFields": [],
    }

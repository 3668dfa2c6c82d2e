"""Shopify's orders of a window, from the GraphQL Admin API, and a missing one through the webhook's own path.

Credentials as a 2026 app gets them: a Dev Dashboard app's client credentials
(``POST /admin/oauth/access_token`` with ``grant_type=client_credentials``: a token valid for
``expires_in`` seconds, 24 hours) or an admin-created app's Admin API token. Scopes ``read_orders``
(``read_all_orders`` for orders past 60 days); the shopper's email, phone, names and addresses come
only with protected customer data access (level 2), as for the webhooks.

Listing asks for scalars only (a page of 100 costs about 100 points); the full order, with its line
items, is fetched only for an order backfilled (:meth:`ShopifyOrders.details`), turned into the REST
body the webhook receives (:func:`webhook_body`) and delivered to the webhook's verified-delivery
path (``shared.receive.shopify.handler.handle_verified``) as ``orders/paid``: the same routing, skip
rules, click join, consent, window and event id as a webhook, so a late webhook adds nothing.
Cost-based throttling is respected: a ``THROTTLED`` answer waits
``(requested cost - currently available) / restore rate`` and asks again, a bounded number of times.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from shared.config import Tenants
from shared.domain.events import shop_key
from shared.outcome import Outcome
from shared.receive.shopify.settings import ShopifySettings, ShopifyShopConfig
from shared.reconcile import (
    ACTIVE,
    CANCELLED,
    MISSING,
    PAID,
    REFUNDED,
    TEST,
    UNPAID,
    ApiError,
    Deliver,
    Flow,
    Shop,
    ShopOrder,
    Webhook,
)
from shared.reconcile.api import Api
from shared.reconcile.settings import ReconcileSettings, per_shop, tenants_of

SOURCE = "shopify"
PAGE_SIZE = 100
LINE_ITEMS = 100
MAX_THROTTLED = 5  # THROTTLED answers waited out per query before giving up
REFRESH_MARGIN_SECONDS = 300  # a client-credentials token is renewed this long before it expires
PAID_STATUSES = frozenset({"PAID", "PARTIALLY_REFUNDED"})

LIST_QUERY = """
query Orders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes { id legacyResourceId name createdAt updatedAt processedAt cancelledAt test displayFinancialStatus }
  }
}
"""

_MONEY = "shopMoney { amount currencyCode } presentmentMoney { amount currencyCode }"
_ADDRESS = "firstName lastName zip city provinceCode countryCodeV2 phone"
ORDER_QUERY = f"""
query Order($query: String!) {{
  orders(first: 1, query: $query) {{ nodes {{
    id legacyResourceId name createdAt updatedAt processedAt cancelledAt cancelReason test
    displayFinancialStatus sourceName email phone customerLocale clientIp cartToken checkoutToken
    currencyCode presentmentCurrencyCode
    totalPriceSet {{ {_MONEY} }}
    customAttributes {{ key value }}
    customerJourneySummary {{ firstVisit {{ landingPage referrerUrl }} }}
    billingAddress {{ {_ADDRESS} }}
    shippingAddress {{ {_ADDRESS} }}
    customer {{ legacyResourceId firstName lastName }}
    lineItems(first: {LINE_ITEMS}) {{
      nodes {{
        title quantity sku vendor
        variant {{ legacyResourceId }}
        product {{ legacyResourceId }}
        originalUnitPriceSet {{ {_MONEY} }}
      }}
    }}
  }} }}
}}
"""

WEBHOOKS_QUERY = "{ webhookSubscriptions(first: 50) { nodes { id topic uri } } }"


def _seconds(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def classify(node: Mapping[str, Any]) -> str:
    """Pure: the order's class, in the webhook's order of rules (test first, then cancelled)."""
    if node.get("test") is True:
        return TEST
    if node.get("cancelledAt"):
        return CANCELLED
    status = str(node.get("displayFinancialStatus") or "").upper()
    if status == "REFUNDED":
        return REFUNDED
    return PAID if status in PAID_STATUSES else UNPAID


def _order(node: Mapping[str, Any]) -> ShopOrder:
    return ShopOrder(str(node.get("legacyResourceId") or ""), str(node.get("name") or ""), classify(node),
                     _seconds(node.get("createdAt")))  # fmt: skip


def _money_set(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None

    def money(name: str) -> dict[str, Any] | None:
        part = value.get(name)
        if not isinstance(part, Mapping):
            return None
        return {"amount": part.get("amount"), "currency_code": part.get("currencyCode")}

    return {"shop_money": money("shopMoney"), "presentment_money": money("presentmentMoney")}


def _address(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    return {"first_name": value.get("firstName"), "last_name": value.get("lastName"), "zip": value.get("zip"),
            "city": value.get("city"), "province_code": value.get("provinceCode"),
            "country_code": value.get("countryCodeV2"), "phone": value.get("phone")}  # fmt: skip


def _id(value: Any) -> int | None:
    legacy = value.get("legacyResourceId") if isinstance(value, Mapping) else None
    return int(legacy) if isinstance(legacy, str) and legacy.isdigit() else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _nodes(value: Any) -> list[Mapping[str, Any]]:
    nodes = value.get("nodes") if isinstance(value, Mapping) else None
    return [node for node in nodes if isinstance(node, Mapping)] if isinstance(nodes, list) else []


def webhook_body(node: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: a GraphQL order as the REST body its ``orders/paid`` webhook carries (the fields the mapping reads)."""
    total = _money_set(node.get("totalPriceSet")) or {}
    journey = _mapping(node.get("customerJourneySummary"))
    visit = _mapping(journey.get("firstVisit"))
    customer = node.get("customer") if isinstance(node.get("customer"), Mapping) else None
    attributes = node.get("customAttributes")
    attributes = attributes if isinstance(attributes, list) else []
    items = []
    for item in _nodes(node.get("lineItems")):
        price: dict[str, Any] = _money_set(item.get("originalUnitPriceSet")) or {}
        items.append({
            "title": item.get("title"), "quantity": item.get("quantity"), "sku": item.get("sku"),
            "vendor": item.get("vendor"), "variant_id": _id(item.get("variant")),
            "product_id": _id(item.get("product")),
            "price": (price.get("shop_money") or {}).get("amount"), "price_set": price,
        })  # fmt: skip
    status = node.get("displayFinancialStatus")
    return {
        "id": int(str(node.get("legacyResourceId"))),
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "processed_at": node.get("processedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "cancel_reason": str(node.get("cancelReason") or "").lower() or None,
        "test": node.get("test") is True,
        "financial_status": status.lower() if isinstance(status, str) else None,
        "source_name": node.get("sourceName"),
        "email": node.get("email"),
        "phone": node.get("phone"),
        "customer_locale": node.get("customerLocale"),
        "browser_ip": node.get("clientIp"),
        "cart_token": node.get("cartToken"),
        "checkout_token": node.get("checkoutToken"),
        "currency": node.get("currencyCode"),
        "presentment_currency": node.get("presentmentCurrencyCode"),
        "total_price": (total.get("shop_money") or {}).get("amount"),
        "total_price_set": total,
        "note_attributes": [{"name": a.get("key"), "value": a.get("value")} for a in attributes
                            if isinstance(a, Mapping)],
        "landing_site": visit.get("landingPage"),
        "referring_site": visit.get("referrerUrl"),
        "billing_address": _address(node.get("billingAddress")),
        "shipping_address": _address(node.get("shippingAddress")),
        "customer": None if customer is None else {
            "id": _id(customer), "first_name": customer.get("firstName"), "last_name": customer.get("lastName"),
        },
        "line_items": items,
    }  # fmt: skip


def _topic(value: Any) -> str:
    """GraphQL's ORDERS_PAID as the webhook's orders/paid."""
    return str(value or "").lower().replace("_", "/", 1)


def throttle_wait(document: Mapping[str, Any]) -> float | None:
    """Pure: seconds to wait when the answer says THROTTLED ((requested - available) / restore rate), else None."""
    errors = document.get("errors")
    throttled = isinstance(errors, list) and any(
        isinstance(e, Mapping) and (e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors
    )
    if not throttled:
        return None
    cost = (document.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        requested, available = float(cost["requestedQueryCost"]), float(status["currentlyAvailable"])
        rate = float(status["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    return max(0.0, (requested - available) / rate) if rate > 0 else 1.0


@dataclass(frozen=True)
class Credentials:
    """One shop's credentials: an Admin API token, or a Dev Dashboard app's client id and secret."""

    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    @property
    def secret_name(self) -> str:
        return "SHOPIFY_ADMIN_TOKEN" if self.token else "SHOPIFY_CLIENT_ID/SHOPIFY_CLIENT_SECRET"


class ShopifyOrders:
    """One shop's orders and webhook subscriptions through the GraphQL Admin API."""

    def __init__(
        self,
        shop: str,
        credentials: Credentials,
        *,
        api_version: str,
        base_url: str | None = None,
        endpoints: tuple[str, ...] = (),
        topics: tuple[str, ...] = (),
        timeout: float = 30.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.shop, self.credentials, self.endpoints, self.topics = shop, credentials, endpoints, topics
        self._path = f"/admin/api/{api_version}/graphql.json"
        self._api = Api(base_url or f"https://{shop}", credential=credentials.secret_name, where=f"Shopify shop {shop}",
                        timeout=timeout, retries=retries, transport=transport, sleep=sleep)  # fmt: skip
        self._clock = clock
        self._token: tuple[str, float] | None = None

    @property
    def calls(self) -> int:
        return self._api.calls

    @property
    def waited(self) -> float:
        return self._api.waited

    def _access_token(self) -> str:
        if self.credentials.token:
            return self.credentials.token
        if self._token and self._token[1] > self._clock():
            return self._token[0]
        response = self._api.request("POST", "/admin/oauth/access_token", data={
            "grant_type": "client_credentials", "client_id": self.credentials.client_id or "",
            "client_secret": self.credentials.client_secret or "",
        })  # fmt: skip
        document = response.json()
        token = document.get("access_token") if isinstance(document, Mapping) else None
        if not isinstance(token, str) or not token:
            raise ApiError(f"Shopify shop {self.shop}: the client-credentials grant answered no access_token")
        lifetime = float(document.get("expires_in") or 86_400)
        self._token = (token, self._clock() + max(60.0, lifetime - REFRESH_MARGIN_SECONDS))
        return token

    def query(self, text: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One GraphQL query's ``data``; THROTTLED waited out (bounded), other errors raised as one line."""
        for attempt in range(MAX_THROTTLED + 1):
            response = self._api.request(
                "POST", self._path, json={"query": text, "variables": dict(variables or {})},
                headers={"X-Shopify-Access-Token": self._access_token()},
            )  # fmt: skip
            document = response.json()
            if not isinstance(document, Mapping):
                raise ApiError(f"Shopify shop {self.shop}: the GraphQL answer is not a JSON object")
            wait = throttle_wait(document)
            if wait is not None:
                if attempt < MAX_THROTTLED:
                    self._api.wait(wait)
                continue
            errors = document.get("errors")
            if errors:
                said = "; ".join(str(e.get("message", e)) if isinstance(e, Mapping) else str(e)
                                 for e in (errors if isinstance(errors, list) else [errors]))  # fmt: skip
                raise ApiError(f"Shopify shop {self.shop}: GraphQL errors: {' '.join(said.split())[:300]}")
            data = document.get("data")
            return dict(data) if isinstance(data, Mapping) else {}
        raise ApiError(f"Shopify shop {self.shop}: still THROTTLED after {MAX_THROTTLED} waits")

    def list(self, since: dt.datetime, until: dt.datetime) -> Iterator[ShopOrder]:
        """Orders created in the window: those updated since its start (every one created in it), filtered."""
        search = f"updated_at:>='{since.astimezone(dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}'"
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            data = self.query(LIST_QUERY, {"first": PAGE_SIZE, "after": cursor, "query": search})
            orders = data.get("orders") or {}
            for node in _nodes(orders):
                order = _order(node)
                if not order.order_id or order.order_id in seen:
                    continue
                seen.add(order.order_id)
                if order.created_at is None or since <= order.created_at < until:
                    yield order
            page = orders.get("pageInfo") or {}
            cursor = page.get("endCursor")
            if not page.get("hasNextPage") or not cursor:
                return

    def details(self, order: ShopOrder) -> ShopOrder:
        found = _nodes(self.query(ORDER_QUERY, {"query": f"id:{order.order_id}"}).get("orders"))
        node = found[0] if found else None
        if not isinstance(node, Mapping) or str(node.get("legacyResourceId")) != order.order_id:
            raise ApiError(f"Shopify shop {self.shop}: order {order.order_id} is gone")
        return replace(order, kind=classify(node), body=webhook_body(node))

    def webhooks(self) -> builtins.list[Webhook] | None:
        """Our subscriptions (their callback is one of our endpoints) and the topics that have none."""
        if not self.endpoints:
            return None
        data = self.query(WEBHOOKS_QUERY)
        ours = [
            Webhook(_topic(n.get("topic")), ACTIVE, str(n.get("uri") or ""), str(n.get("id") or ""))
            for n in _nodes(data.get("webhookSubscriptions"))
            if str(n.get("uri") or "") in self.endpoints
        ]
        covered = {webhook.topic for webhook in ours}
        return ours + [Webhook(topic, MISSING) for topic in self.topics if topic not in covered]  # fmt: skip

    def repair(self, webhook: Webhook) -> Webhook:
        raise ApiError(
            f"Shopify shop {self.shop}: no {webhook.topic} subscription to our endpoint; Shopify deletes an app's "
            "subscription after its retries fail: deploy the app's webhooks again (docs/deploy.md, step 7)"
        )

    def close(self) -> None:
        self._api.close()


def _flow(
    shop: ShopifyShopConfig, tenants: Tenants, shops: Mapping[str, ShopifyShopConfig], settings: ReconcileSettings
) -> Flow:
    """The webhook's verified-delivery path for one shop, each order delivered as ``orders/paid``."""

    def over(store: Any, publisher: Any) -> Deliver:
        from shared.receive.shopify.handler import handle_verified
        from shared.receive.shopify.request import ORDERS_PAID, Delivery
        from shared.receive.shopify.runtime import Runtime

        runtime = Runtime(
            tenants, shops, default_region=settings.default_phone_region, store=store, publisher=publisher,
            io_seconds=settings.timeout_seconds, max_event_age=dt.timedelta(days=settings.max_event_age_days),
            # The body is the shop's answer to our own request, not a replay: its age is the order window's
            # to judge (an order paid past ORDER_MAX_EVENT_AGE_DAYS is recorded skipped, outside_window).
            max_order_age=dt.timedelta(days=36_500),
        )  # fmt: skip
        delivery = Delivery(shop_domain=shop.domain, topic=ORDERS_PAID)

        def deliver(order: ShopOrder) -> Outcome:
            reply = handle_verified(delivery, shop, json.dumps(order.body).encode(), runtime)
            assert reply.outcome is not None  # handle_verified always says what happened
            return reply.outcome

        return deliver

    return over


class ShopifyChannel:
    """Shopify as reconciliation sees it: ``shared.sources.shopify``'s ``orders`` hook."""

    source = SOURCE

    def shops(self, settings: ReconcileSettings, environ: Mapping[str, str],
              transport: httpx.BaseTransport | None = None) -> list[Shop]:  # fmt: skip
        webhook = tenants_of(SOURCE, environ)
        if webhook is None:
            return []
        assert isinstance(webhook.settings, ShopifySettings)  # shared.sources.shopify's settings class
        tenants, shops = webhook.tenants, webhook.settings.shops(webhook.tenants)
        domains = sorted(shops)
        tokens = per_shop("SHOPIFY_ADMIN_TOKEN", settings.shopify_admin_token, domains)
        ids = per_shop("SHOPIFY_CLIENT_ID", settings.shopify_client_id, domains)
        secrets = per_shop("SHOPIFY_CLIENT_SECRET", settings.shopify_client_secret, domains)
        endpoints = tuple(u.strip() for u in (settings.shopify_webhook_url or "").split(",") if u.strip())
        topics = tuple(t.strip() for t in settings.shopify_topics.split(",") if t.strip())
        found = []
        for domain in domains:
            config = shops[domain]
            credentials = Credentials(tokens.get(domain), ids.get(domain), secrets.get(domain))
            usable = credentials.token or (credentials.client_id and credentials.client_secret)
            base = settings.shopify_admin_url.replace("{shop}", domain) if settings.shopify_admin_url else None
            client = ShopifyOrders(
                domain, credentials, api_version=settings.shopify_api_version, base_url=base, endpoints=endpoints,
                topics=topics, timeout=settings.timeout_seconds, retries=settings.retries, transport=transport,
            ) if usable else None  # fmt: skip
            problem = None if usable else "no credentials: set SHOPIFY_ADMIN_TOKEN, or SHOPIFY_CLIENT_ID and SECRET"
            found.append(Shop(SOURCE, shop_key(domain), config.pixel_code, client,
                              _flow(config, tenants, shops, settings), problem))  # fmt: skip
        return found


CHANNEL = ShopifyChannel()

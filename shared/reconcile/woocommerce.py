"""WooCommerce's orders of a window, from the REST API v3, and a missing one through the webhook's order flow.

``GET <site>/wp-json/wc/v3/orders?modified_after=<iso>&per_page=100&page=N&status=any`` with
Basic auth (a read-only REST API key; ``--repair`` needs a read_write one), pages counted by
``X-WP-TotalPages``. The REST order *is* the webhook's body, so a missing paid order is mapped by
the webhook's own :func:`shared.receive.woocommerce.mapping.map_order` and goes through
:func:`shared.receive.orders.process_order_event` with the checkout's ``_tt_consent`` laid over
the stored click context exactly as the webhook does. Webhook health: ``GET .../webhooks``
(``active``, ``paused``, ``disabled``), and ``PUT .../webhooks/<id> {"status": "active"}`` to repair.
"""

from __future__ import annotations

import builtins
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import httpx

from shared.config import Tenants
from shared.domain.events import shop_key
from shared.outcome import Kind, Outcome
from shared.receive.woocommerce.mapping import NEVER_PURCHASE_STATUSES, ignore_reason, order_status
from shared.receive.woocommerce.settings import WooCommerceSettings, WooCommerceSiteConfig
from shared.reconcile import (
    ACTIVE,
    CANCELLED,
    MISSING,
    PAID,
    REFUNDED,
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

SOURCE = "woocommerce"
PAGE_SIZE = 100
ORDERS_PATH = "/wp-json/wc/v3/orders"
WEBHOOKS_PATH = "/wp-json/wc/v3/webhooks"
# The topics our webhooks are made with (docs/deploy.md, step 7d).
TOPICS = ("order.created", "order.updated")


def _gmt(value: Any) -> dt.datetime | None:
    """WooCommerce's ``*_gmt`` dates are UTC without a suffix."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def classify(order: Mapping[str, Any]) -> str:
    """Pure: the order's class by the webhook's own rules (a never-purchase status wins over date_paid_gmt)."""
    status = order_status(order)
    if status in NEVER_PURCHASE_STATUSES:
        return REFUNDED if status == "refunded" else CANCELLED
    return PAID if ignore_reason(TOPICS[1], order) is None else UNPAID


def _order(body: Mapping[str, Any]) -> ShopOrder | None:
    order_id = body.get("id")
    if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id <= 0:
        return None
    number = body.get("number")
    name = f"#{number}" if isinstance(number, (str, int)) and str(number).strip() else f"#{order_id}"
    return ShopOrder(str(order_id), name[:40], classify(body), _gmt(body.get("date_created_gmt")), body)


class WooCommerceOrders:
    """One site's orders and webhooks through the REST API v3."""

    def __init__(
        self,
        site: str,
        base_url: str,
        key: str,
        secret: str,
        *,
        endpoint: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.site, self.endpoint = site, endpoint
        self._api = Api(
            base_url, credential="WOOCOMMERCE_API_KEY/WOOCOMMERCE_API_SECRET", where=f"WooCommerce site {site}",
            auth=(key, secret), timeout=timeout, retries=retries, transport=transport, sleep=sleep,
        )  # fmt: skip

    @property
    def calls(self) -> int:
        return self._api.calls

    def _pages(self, path: str, params: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        page, pages = 1, 1
        while page <= pages:
            response = self._api.request("GET", path, params={**params, "per_page": PAGE_SIZE, "page": page})
            try:
                pages = int(response.headers.get("X-WP-TotalPages", "1"))
            except ValueError:
                pages = 1
            items = response.json()
            if not isinstance(items, list):
                raise ApiError(f"WooCommerce site {self.site}: {path} did not answer a JSON list")
            yield from (item for item in items if isinstance(item, Mapping))
            if not items:
                return
            page += 1

    def list(self, since: dt.datetime, until: dt.datetime) -> Iterator[ShopOrder]:
        """Orders created in the window: those modified since its start (every one created in it), filtered."""
        params = {"modified_after": since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                  "dates_are_gmt": "true", "status": "any", "orderby": "id", "order": "asc"}  # fmt: skip
        seen: set[str] = set()
        for body in self._pages(ORDERS_PATH, params):
            order = _order(body)
            if order is None or order.order_id in seen:
                continue
            seen.add(order.order_id)
            if order.created_at is None or since <= order.created_at < until:
                yield order

    def details(self, order: ShopOrder) -> ShopOrder:
        return order  # the listed order is already the webhook's body

    def webhooks(self) -> builtins.list[Webhook] | None:
        """The site's order webhooks (to our endpoint, when it is set) and the topics that have none."""
        found = []
        for hook in self._pages(WEBHOOKS_PATH, {}):
            topic, url = str(hook.get("topic") or ""), str(hook.get("delivery_url") or "")
            if topic.startswith("order.") and (not self.endpoint or url.rstrip("/") == self.endpoint.rstrip("/")):
                found.append(Webhook(topic, str(hook.get("status") or "unknown"), url, str(hook.get("id") or "")))
        covered = {webhook.topic for webhook in found}
        return found + [Webhook(topic, MISSING) for topic in TOPICS if topic not in covered]

    def repair(self, webhook: Webhook) -> Webhook:
        if not webhook.id:
            raise ApiError(f"WooCommerce site {self.site}: no {webhook.topic} webhook to re-enable: create it "
                           "(docs/deploy.md, step 7d)")  # fmt: skip
        response = self._api.request("PUT", f"{WEBHOOKS_PATH}/{webhook.id}", json={"status": ACTIVE},
                                     credential="WOOCOMMERCE_API_KEY (read_write, for --repair)")  # fmt: skip
        body = response.json()
        status = str(body.get("status") or "unknown") if isinstance(body, Mapping) else "unknown"
        return replace(webhook, status=status)

    def close(self) -> None:
        self._api.close()


def _flow(site: WooCommerceSiteConfig, tenants: Tenants, settings: ReconcileSettings) -> Flow:
    """The webhook's rules and order flow for one site, each order as an ``order.updated`` delivery."""

    def over(store: Any, publisher: Any) -> Deliver:
        from shared.receive.orders import process_order_event
        from shared.receive.woocommerce.mapping import UnusableOrder, checkout_consent, map_order

        pixel = tenants.pixels[site.pixel_code]
        policy = tenants.policy_for(site.pixel_code, site.consent_policy)

        def deliver(order: ShopOrder) -> Outcome:
            body = order.body or {}
            reason = ignore_reason(TOPICS[1], body)
            if reason:  # what the webhook answers such an order: nothing recorded, nothing sent
                return Outcome(Kind.IGNORED, reason)
            try:
                event = map_order(body, site)
            except UnusableOrder as exc:
                return Outcome(Kind.REJECTED, str(exc))
            return process_order_event(
                event, pixel=pixel, policy=policy, store=store, publisher=publisher,
                default_region=settings.default_phone_region,
                max_event_age=dt.timedelta(days=settings.max_event_age_days),
                consent=checkout_consent(body),  # the checkout's _tt_consent over the stored one, as the webhook
            )  # fmt: skip

        return deliver

    return over


class WooCommerceChannel:
    """WooCommerce as reconciliation sees it: ``shared.sources.woocommerce``'s ``orders`` hook."""

    source = SOURCE

    def shops(self, settings: ReconcileSettings, environ: Mapping[str, str],
              transport: httpx.BaseTransport | None = None) -> list[Shop]:  # fmt: skip
        webhook = tenants_of(SOURCE, environ)
        if webhook is None:
            return []
        assert isinstance(webhook.settings, WooCommerceSettings)  # shared.sources.woocommerce's settings class
        tenants, configs = webhook.tenants, webhook.settings.sites(webhook.tenants)
        sites = sorted(configs)
        keys = per_shop("WOOCOMMERCE_API_KEY", settings.woocommerce_api_key, sites)
        secrets = per_shop("WOOCOMMERCE_API_SECRET", settings.woocommerce_api_secret, sites)
        found = []
        for name in sites:
            config = configs[name]
            base = (settings.woocommerce_api_url.replace("{site}", name) if settings.woocommerce_api_url
                    else config.url if "://" in config.url else f"https://{config.url}")  # fmt: skip
            usable = name in keys and name in secrets
            client = WooCommerceOrders(
                name, base, keys.get(name, ""), secrets.get(name, ""), endpoint=settings.woocommerce_webhook_url,
                timeout=settings.timeout_seconds, retries=settings.retries, transport=transport,
            ) if usable else None  # fmt: skip
            problem = None if usable else "no credentials: set WOOCOMMERCE_API_KEY and WOOCOMMERCE_API_SECRET"
            found.append(Shop(SOURCE, shop_key(name), config.pixel_code, client, _flow(config, tenants, settings),
                              problem))  # fmt: skip
        return found


CHANNEL = WooCommerceChannel()

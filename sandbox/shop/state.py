"""The shop's memory and behaviour, without HTTP: orders, tokens, subscriptions, webhooks, deliveries.

One :class:`Shop` serves both platforms. Every read and write holds ``lock``; network calls
(webhook deliveries) run on the :class:`~sandbox.shop.delivery.Scheduler`'s threads, outside
the lock, so neither a slow receiver nor a control call ever waits on the other.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import httpx

from sandbox.shop import orders as orderlib
from sandbox.shop.config import SHOPIFY_TOPICS, WOOCOMMERCE_TOPICS, Knobs, ShopConfig
from sandbox.shop.delivery import (
    WOOCOMMERCE_STATUSES,
    Delivery,
    Scheduler,
    Subscription,
    WooWebhook,
    retry_delays,
    shopify_gives_up,
    shopify_headers,
    shopify_succeeded,
    woocommerce_headers,
    woocommerce_succeeded,
)
from sandbox.shop.orders import SHOPIFY, WOOCOMMERCE, OrderError
from sandbox.shop.shopify_search import parse_datetime
from sandbox.shop.throttle import CostBucket

TOKEN_LIFETIME = 86399  # seconds, as the client credentials grant answers
ORDER_HISTORY_DAYS = 60  # without read_all_orders, Shopify shows the last 60 days of orders
MAX_DELIVERIES_KEPT = 20_000


class NotFound(LookupError):
    """The id names nothing the shop holds."""


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Shop:
    def __init__(self, config: ShopConfig, clock: Callable[[], float] = time.time,
                 http: httpx.Client | None = None) -> None:  # fmt: skip
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.http = http or httpx.Client(follow_redirects=False)
        self.scheduler = Scheduler()
        self._ids = itertools.count(1)
        self.reset(config.knobs)

    # -- lifecycle -------------------------------------------------------------------------------

    def reset(self, knobs: Knobs | None = None) -> None:
        """Back to the seeded orders, the configured webhooks and a full cost bucket; deliveries forgotten."""
        self.scheduler.clear()
        with self.lock:
            self.knobs = knobs or self.config.knobs
            self.bucket = CostBucket(self.knobs.graphql_maximum, self.knobs.graphql_restore_rate)
            self.tokens: dict[str, float] = {}
            self.orders: dict[str, dict[int, dict[str, Any]]] = {SHOPIFY: {}, WOOCOMMERCE: {}}
            self.subscriptions: dict[int, Subscription] = {}
            self.webhooks: dict[int, WooWebhook] = {}
            self.deliveries: dict[str, Delivery] = {}
            self.woo_requests = 0
            self._number = 0
            self._next_shopify_id = 5_000_000_000_000_000_000  # beyond 2^53, as Shopify's are
            self._next_woo_id = 10_000
            self._next_hook_id = 1
            for platform, seeded in orderlib.seed_orders(self.config.fixtures).items():
                for order in seeded:
                    self.orders[platform][int(order["id"])] = order
            now = _iso(self.clock())
            if self.config.shopify_webhook_url:
                for topic in SHOPIFY_TOPICS:
                    self._add_subscription(topic, self.config.shopify_webhook_url, now)
            if self.config.woocommerce_webhook_url:
                for topic in WOOCOMMERCE_TOPICS:
                    url, secret = self.config.woocommerce_webhook_url, self.config.woocommerce_webhook_secret
                    self._add_webhook(topic, url, secret, "active", f"TikTok pipeline ({topic})", now[:19])

    def set_knobs(self, knobs: Knobs) -> None:
        with self.lock:
            bucket_changed = (knobs.graphql_maximum, knobs.graphql_restore_rate) != (
                self.knobs.graphql_maximum, self.knobs.graphql_restore_rate)  # fmt: skip
            self.knobs = knobs
            if bucket_changed:
                self.bucket = CostBucket(knobs.graphql_maximum, knobs.graphql_restore_rate)

    def close(self) -> None:
        self.scheduler.stop()
        self.http.close()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)

    # -- Shopify auth --------------------------------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> str | None:
        """A token for the client credentials grant, or None when the credentials are wrong."""
        if not (secrets.compare_digest(client_id, self.config.shopify_client_id)
                and secrets.compare_digest(client_secret, self.config.shopify_client_secret)):  # fmt: skip
            return None
        token = "shpat_" + secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = self.clock() + TOKEN_LIFETIME
        return token

    def token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        if secrets.compare_digest(token, self.config.shopify_admin_token):
            return True
        with self.lock:
            expires = self.tokens.get(token)
        return expires is not None and expires > self.clock()

    def visible_shopify_orders(self) -> list[dict[str, Any]]:
        """What the app may read: the last 60 days only, unless its scopes include read_all_orders."""
        with self.lock:
            orders = list(self.orders[SHOPIFY].values())
            scopes = {s.strip() for s in self.knobs.shopify_scopes.split(",")}
        if "read_all_orders" in scopes:
            return orders
        oldest = self.now() - dt.timedelta(days=ORDER_HISTORY_DAYS)
        return [o for o in orders if (parse_datetime(o.get("created_at")) or oldest) >= oldest]

    # -- orders ----------------------------------------------------------------------------------------

    def place(self, platform: str, params: Mapping[str, Any], deliver: bool = True) -> dict[str, Any]:
        with self.lock:
            order = self._build(platform, params)
            self.orders[platform][int(order["id"])] = order
            if deliver:
                paid = orderlib.is_paid(platform, order)
                topics = orderlib.SHOPIFY_TOPICS["create_paid" if paid else "create"] if platform == SHOPIFY else (
                    orderlib.WOOCOMMERCE_TOPICS["create"])  # fmt: skip
                self._fire(platform, order, topics)
            return order

    def place_many(self, platform: str, count: int, params: Mapping[str, Any], spacing: float) -> list[int]:
        """``count`` orders created ``spacing`` seconds apart ending now (or at ``created_at``), no webhooks."""
        end = parse_datetime(params.get("created_at")) or self.now()
        ids = []
        with self.lock:
            for index in range(count):
                moment = end - dt.timedelta(seconds=spacing * (count - 1 - index))
                stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
                order = self._build(platform, {**params, "created_at": stamp, "updated_at": stamp})
                self.orders[platform][int(order["id"])] = order
                ids.append(int(order["id"]))
        return ids

    def _build(self, platform: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if platform == SHOPIFY:
            self._number += 1
            self._next_shopify_id += 1 + secrets.randbelow(1000)
            return orderlib.shopify_order(self._next_shopify_id, self._number, params, self.now())
        self._next_woo_id += 1
        return orderlib.woocommerce_order(self._next_woo_id, params, self.config.woocommerce_site_url, self.now())

    def order(self, platform: str, order_id: int) -> dict[str, Any]:
        with self.lock:
            order = self.orders[platform].get(order_id)
            if order is None:
                raise NotFound(f"no {platform} order {order_id}")
            return order

    def change(self, platform: str, order_id: int, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            order = self.order(platform, order_id)
            refund_id = next(self._ids) + 900_000_000
            if platform == SHOPIFY:
                changed, topics, refund = orderlib.shopify_change(order, action, params, self.now(), refund_id)
                bodies = {"refunds/create": refund} if refund else {}
            else:
                changed, topics = orderlib.woocommerce_change(order, action, params, self.now(), refund_id)
                bodies = {}
            self.orders[platform][order_id] = changed
            if params.get("webhooks", True):
                self._fire(platform, changed, topics, bodies)
            return changed

    # -- webhooks: configuration -----------------------------------------------------------------------

    def _add_subscription(self, topic: str, uri: str, now: str, api_version: str | None = None,
                          created_by: str = "app", secret: str | None = None) -> Subscription:  # fmt: skip
        subscription = Subscription(self._next_hook_id, topic, uri, api_version or self.config.shopify_api_version,
                                    now, created_by, secret)  # fmt: skip
        self._next_hook_id += 1
        self.subscriptions[subscription.id] = subscription
        return subscription

    def add_subscription(self, params: Mapping[str, Any]) -> Subscription:
        topic, uri = params.get("topic"), params.get("uri") or params.get("address")
        if not isinstance(topic, str) or "/" not in topic:
            raise OrderError("topic must be a Shopify topic such as orders/paid")
        if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
            raise OrderError("uri must be an http(s) address")
        created_by = params.get("created_by", "app")
        if created_by not in ("app", "admin"):
            raise OrderError("created_by must be app (Admin API) or admin (Settings > Notifications)")
        with self.lock:
            return self._add_subscription(topic, uri, _iso(self.clock()), params.get("api_version"), created_by,
                                          params.get("secret"))  # fmt: skip

    def remove_subscription(self, subscription_id: int) -> None:
        with self.lock:
            if self.subscriptions.pop(subscription_id, None) is None:
                raise NotFound(f"no subscription {subscription_id}")

    def live_subscriptions(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.to_json() for s in self.subscriptions.values() if not s.removed_at]

    def _add_webhook(self, topic: str, url: str, secret: str, status: str, name: str, now: str) -> WooWebhook:
        webhook = WooWebhook(self._next_hook_id, name, topic, url, secret, status, 0, now, now)
        self._next_hook_id += 1
        self.webhooks[webhook.id] = webhook
        return webhook

    def add_webhook(self, params: Mapping[str, Any]) -> WooWebhook:
        topic, url = params.get("topic"), params.get("delivery_url") or params.get("address")
        if topic not in ("order.created", "order.updated", "order.deleted", "order.restored"):
            raise OrderError("topic must be an order topic such as order.updated")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise OrderError("delivery_url must be an http(s) address")
        status = params.get("status", "active")
        if status not in WOOCOMMERCE_STATUSES:
            raise OrderError(f"status must be one of {', '.join(WOOCOMMERCE_STATUSES)}")
        secret = params.get("secret", self.config.woocommerce_webhook_secret)
        with self.lock:
            stamp = _iso(self.clock())[:19]
            return self._add_webhook(str(topic), url, str(secret), str(status), str(params.get("name") or topic), stamp)

    def update_webhook(self, webhook_id: int, params: Mapping[str, Any]) -> WooWebhook:
        """``PUT /wc/v3/webhooks/<id>``: name, status, delivery_url, secret.

        Setting the status does not reset the failure count (``WC_Webhook::set_status`` leaves it;
        plugins that re-activate call ``set_failure_count(0)`` themselves): a webhook re-activated
        after being disabled is disabled again by its next failure, unless a success comes first.
        """
        with self.lock:
            webhook = self.webhooks.get(webhook_id)
            if webhook is None:
                raise NotFound(f"no webhook {webhook_id}")
            status = params.get("status")
            if status is not None and status not in WOOCOMMERCE_STATUSES:
                raise OrderError("Webhook status must be valid.")
            url = params.get("delivery_url")
            if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
                raise OrderError("Webhook delivery URL must be a valid URL starting with http:// or https://.")
            if status is not None:
                webhook.status = str(status)
            if url:
                webhook.delivery_url = url
            if params.get("name"):
                webhook.name = str(params["name"])
            if params.get("secret"):
                webhook.secret = str(params["secret"])
            webhook.date_modified = _iso(self.clock())[:19]
            return webhook

    # -- webhooks: delivery ------------------------------------------------------------------------------

    def _fire(self, platform: str, order: dict[str, Any], topics: tuple[str, ...],
              bodies: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        """Queue a delivery per matching endpoint; the caller holds the lock, nothing here waits."""
        now = _iso(self.clock())
        for topic in topics:
            if platform == SHOPIFY:
                body = json.dumps((bodies or {}).get(topic) or order).encode()
                event_id = str(uuid.uuid4())
                for subscription in list(self.subscriptions.values()):
                    if subscription.topic != topic or subscription.removed_at:
                        continue
                    record = Delivery(f"d{next(self._ids)}", SHOPIFY, topic, int(order["id"]), subscription.id,
                                      subscription.uri, now, str(uuid.uuid4()), event_id, body=body)  # fmt: skip
                    self._remember(record)
                    self.scheduler.schedule(0, partial(self._attempt_shopify, record.id))
            else:
                for webhook in list(self.webhooks.values()):
                    if webhook.topic != topic:
                        continue
                    record = Delivery(f"d{next(self._ids)}", WOOCOMMERCE, topic, int(order["id"]), webhook.id,
                                      webhook.delivery_url, now, str(webhook.id))  # fmt: skip
                    self._remember(record)
                    if webhook.status != "active":
                        record.state, record.reason = "skipped", f"webhook is {webhook.status}: nothing is sent"
                        continue
                    self.scheduler.schedule(0, partial(self._attempt_woocommerce, record.id))

    def _remember(self, record: Delivery) -> None:
        self.deliveries[record.id] = record
        if len(self.deliveries) > MAX_DELIVERIES_KEPT:
            oldest = next(iter(self.deliveries))
            self.deliveries.pop(oldest)

    def _post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        attempt: dict[str, Any] = {"at": _iso(self.clock())}
        try:
            response = self.http.post(url, content=body, headers=headers, timeout=timeout)
            attempt["status"] = response.status_code
            attempt["answer"] = response.text[:500]  # as WooCommerce's delivery log keeps it
        except httpx.TimeoutException:
            attempt["status"], attempt["error"] = None, f"no answer within {timeout:g} s"
        except httpx.HTTPError as exc:
            attempt["status"], attempt["error"] = None, f"{type(exc).__name__}: {exc}"[:200]
        attempt["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        return attempt

    def _attempt_shopify(self, delivery_id: str) -> None:
        with self.lock:
            record = self.deliveries.get(delivery_id)
            if record is None:
                return
            subscription = self.subscriptions.get(record.target_id)
            if subscription is None or subscription.removed_at:
                record.state, record.reason, record.next_attempt_in = "dropped", "subscription removed", None
                return
            secret = subscription.secret or self.config.shopify_client_secret
            headers = shopify_headers(record.body or b"", secret, record.topic, self.config.shop_domain,
                                      subscription.api_version, record.webhook_id, record.event_id,
                                      record.triggered_at)  # fmt: skip
            knobs = self.knobs
        attempt = self._post(record.address, record.body or b"", headers, knobs.shopify_timeout)
        with self.lock:
            record.attempts.append(attempt)
            ok = shopify_succeeded(attempt["status"])
            failures = len(record.attempts)
            gave_up = not ok and shopify_gives_up(failures, knobs.shopify_retries)
            removed = subscription.after_attempt(ok, gave_up, knobs.shopify_remove_after, attempt["at"])
            if ok:
                record.state, record.next_attempt_in = "delivered", None
            elif gave_up:
                record.state, record.next_attempt_in = "gave_up", None
                record.reason = f"no 2xx after {failures} attempts" + ("; subscription removed" if removed else "")
            else:
                delay = retry_delays(failures, knobs.time_factor)[failures - 1]
                record.state, record.next_attempt_in = "retrying", round(delay, 3)
                self.scheduler.schedule(delay, partial(self._attempt_shopify, delivery_id))

    def _attempt_woocommerce(self, delivery_id: str) -> None:
        with self.lock:
            record = self.deliveries.get(delivery_id)
            if record is None:
                return
            webhook = self.webhooks.get(record.target_id)
            if webhook is None or webhook.status != "active":
                record.state = "skipped"
                record.reason = "webhook deleted" if webhook is None else f"webhook is {webhook.status}"
                return
            # WooCommerce builds the payload when it sends, not when the order changed.
            order = self.orders[WOOCOMMERCE].get(record.order_id)
            body = json.dumps(order).encode()
            delivery_key = secrets.token_hex(16)
            headers = woocommerce_headers(body, webhook.secret, record.topic, self.config.woocommerce_site_url,
                                          webhook.id, delivery_key)  # fmt: skip
            record.address = webhook.delivery_url
            timeout = self.knobs.woocommerce_timeout
            max_failures = self.knobs.woocommerce_max_failures
        attempt = self._post(record.address, body, headers, timeout)
        attempt["delivery_id"] = delivery_key
        with self.lock:
            record.attempts.append(attempt)
            ok = woocommerce_succeeded(attempt["status"])
            disabled = webhook.after_delivery(ok, max_failures)
            record.state = "delivered" if ok else "failed"
            if disabled:
                record.reason = "this failure disabled the webhook"

    def list_deliveries(self, **filters: str | None) -> list[dict[str, Any]]:
        with self.lock:
            records = [d.to_json() for d in self.deliveries.values()]
        return [r for r in records if all(v is None or str(r.get(k)) == v for k, v in filters.items())]

    def count_woo_request(self) -> bool:
        """Count a WooCommerce REST request; True when this one is to be answered 429."""
        with self.lock:
            self.woo_requests += 1
            every = self.knobs.woocommerce_429_every
            return bool(every) and self.woo_requests % every == 0

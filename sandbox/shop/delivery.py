"""How each platform delivers its webhooks: signatures, headers, retry schedules, the rules that
disable a failing endpoint, and a small scheduler that runs attempts off the request threads.

Pure parts first (tested without a network): :func:`shopify_headers`, :func:`woocommerce_headers`,
:func:`retry_delays`, :func:`shopify_gives_up`, :class:`Subscription.after_attempt`,
:class:`WooWebhook.after_delivery`. Then :class:`Scheduler`: a heap of due jobs and a thread
pool, so a receiver that hangs for its whole timeout delays nobody else.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import html
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

# Shopify: "retried a total of 8 times over 4 hours using an exponential backoff schedule" (changelog,
# 2024-09). The exact delays are not published: these double up to 4 hours in total.
SHOPIFY_RETRY_DELAYS_MINUTES = (1, 2, 4, 8, 15, 30, 60, 120)
SHOPIFY_RETRIES = len(SHOPIFY_RETRY_DELAYS_MINUTES)
SHOPIFY_REMOVE_AFTER = 8  # consecutive failures that delete an app-created subscription
SHOPIFY_TIMEOUT_SECONDS = 5.0
WOOCOMMERCE_TIMEOUT_SECONDS = 60.0
WOOCOMMERCE_MAX_FAILURES = 5  # woocommerce_max_webhook_delivery_failures
WOOCOMMERCE_STATUSES = ("active", "paused", "disabled")
SHOPIFY_USER_AGENT = "Shopify-Captain-Hook"
WOOCOMMERCE_USER_AGENT = "WooCommerce/9.8.0 Hookshot (WordPress/6.8.1)"


def retry_delays(retries: int, time_factor: float) -> list[float]:
    """Seconds to wait before each retry, Shopify's schedule scaled by ``time_factor`` (1.0: real time).

    Asking for more retries than the schedule holds repeats its last delay.
    """
    minutes = [SHOPIFY_RETRY_DELAYS_MINUTES[min(i, SHOPIFY_RETRIES - 1)] for i in range(max(0, retries))]
    return [m * 60.0 * time_factor for m in minutes]


def hmac_base64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(
    body: bytes, secret: str, topic: str, shop_domain: str, api_version: str, webhook_id: str, event_id: str,
    triggered_at: str,
) -> dict[str, str]:  # fmt: skip
    """What Shopify sends with an HTTPS delivery; the same ids and time on every retry of one webhook."""
    return {
        "Content-Type": "application/json",
        "User-Agent": SHOPIFY_USER_AGENT,
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_base64(secret, body),
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": triggered_at,
    }


def woocommerce_headers(
    body: bytes, secret: str, topic: str, site_url: str, webhook_id: int, delivery_id: str
) -> dict[str, str]:
    """What WooCommerce's ``WC_Webhook::deliver`` sends; the secret is HTML-decoded before signing."""
    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "User-Agent": WOOCOMMERCE_USER_AGENT,
        "X-WC-Webhook-Source": site_url.rstrip("/") + "/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": hmac_base64(html.unescape(secret), body),
        "X-WC-Webhook-ID": str(webhook_id),
        "X-WC-Webhook-Delivery-ID": delivery_id,
    }


def shopify_succeeded(status: int | None) -> bool:
    """Only a 2xx counts: a redirect is a failure to Shopify."""
    return status is not None and 200 <= status < 300


def woocommerce_succeeded(status: int | None) -> bool:
    """2xx, 301 and 302 count (``WC_Webhook::log_delivery``: 200 <= code < 303)."""
    return status is not None and 200 <= status < 303


def shopify_gives_up(failed_attempts: int, retries: int) -> bool:
    """Whether a webhook that has failed ``failed_attempts`` times (first try included) is given up."""
    return failed_attempts > retries


@dataclass
class Subscription:
    """A Shopify webhook subscription; ``created_by`` "app" (Admin API) or "admin" (Settings > Notifications)."""

    id: int
    topic: str
    uri: str
    api_version: str
    created_at: str
    created_by: str = "app"
    secret: str | None = None  # None: the app's client secret signs
    consecutive_failures: int = 0
    removed_at: str | None = None
    removed_reason: str | None = None

    def after_attempt(self, ok: bool, gave_up: bool, remove_after: int, now: str) -> bool:
        """Count one attempt; True when this attempt got the subscription removed.

        Shopify deletes an Admin-API subscription after ``remove_after`` consecutive failures; the
        sandbox applies that when a webhook is given up, so the last retry of a webhook is still sent.
        """
        if ok:
            self.consecutive_failures = 0
            return False
        self.consecutive_failures += 1
        if gave_up and self.created_by == "app" and self.consecutive_failures >= remove_after and not self.removed_at:
            self.removed_at = now
            self.removed_reason = f"{self.consecutive_failures} consecutive failed deliveries"
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "secret"} | {"own_secret": self.secret is not None}


@dataclass
class WooWebhook:
    """A WooCommerce webhook; ``failure_count`` is stored by WooCommerce but not shown by its REST API."""

    id: int
    name: str
    topic: str
    delivery_url: str
    secret: str
    status: str = "active"
    failure_count: int = 0
    date_created: str = ""
    date_modified: str = ""

    def after_delivery(self, ok: bool, max_failures: int) -> bool:
        """``WC_Webhook::failed_delivery``; True when this failure disabled the webhook.

        WooCommerce compares the count *before* incrementing: a failure when more than
        ``max_failures`` are already counted disables the webhook instead of counting it. With the
        default 5, the 7th consecutive failed delivery is the one that disables.
        """
        if ok:
            self.failure_count = 0
            return False
        if self.failure_count > max_failures:
            self.status = "disabled"
            return True
        self.failure_count += 1
        return False

    def rest_json(self, site_url: str) -> dict[str, Any]:
        """``GET /wc/v3/webhooks/<id>`` (no secret, no failure count)."""
        resource, _, event = self.topic.partition(".")
        base = site_url.rstrip("/")
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "topic": self.topic,
            "resource": resource,
            "event": event,
            "hooks": WOOCOMMERCE_HOOKS.get(self.topic, []),
            "delivery_url": self.delivery_url,
            "date_created": self.date_created,
            "date_created_gmt": self.date_created,
            "date_modified": self.date_modified,
            "date_modified_gmt": self.date_modified,
            "_links": {
                "self": [{"href": f"{base}/wp-json/wc/v3/webhooks/{self.id}"}],
                "collection": [{"href": f"{base}/wp-json/wc/v3/webhooks"}],
            },
        }


WOOCOMMERCE_HOOKS = {
    "order.created": ["woocommerce_new_order"],
    "order.updated": ["woocommerce_update_order", "woocommerce_order_refunded", "woocommerce_delete_order_refund"],
}


@dataclass
class Delivery:
    """One webhook to one endpoint and every attempt at it (what ``GET /_shop/deliveries`` lists)."""

    id: str
    platform: str
    topic: str
    order_id: int
    target_id: int  # subscription or webhook id
    address: str
    triggered_at: str
    webhook_id: str = ""  # X-Shopify-Webhook-Id (same on every retry); the WooCommerce webhook's id
    event_id: str = ""  # X-Shopify-Event-Id
    state: str = "pending"  # pending, retrying, delivered, gave_up, failed, skipped, dropped
    reason: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    next_attempt_in: float | None = None
    body: bytes | None = field(default=None, repr=False)  # Shopify: fixed when triggered

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "body"}


class Scheduler:
    """Runs jobs when they are due, on a small pool of worker threads; :meth:`stop` ends both."""

    def __init__(self, workers: int = 8, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shop-delivery")
        self._thread = threading.Thread(target=self._run, name="shop-scheduler", daemon=True)
        self._thread.start()

    def schedule(self, delay: float, job: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._heap, (self._clock() + max(0.0, delay), next(self._sequence), job))
            self._wake.notify()

    def clear(self) -> None:
        with self._wake:
            self._heap.clear()

    def pending(self) -> int:
        with self._wake:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    self._wake.wait(None if not self._heap else max(0.0, self._heap[0][0] - self._clock()))
                if self._stopped:
                    return
                due: Sequence[tuple[float, int, Callable[[], None]]] = [heapq.heappop(self._heap)]
            for _, _, job in due:
                self._pool.submit(job)

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

"""One Shopify delivery before its body is read: the ``X-Shopify-*`` headers, the topics, the shop it is for.

:func:`find_shop` is the gate both delivery methods share: nothing else happens
to a delivery that names no shop this deployment serves or, over HTTPS, whose
HMAC does not prove the shop wrote the body (it raises :class:`Refused`). The limits a delivery is held to
live here too, beside the headers they bound.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared import budgets
from shared.domain.events import shop_key
from shared.infra.http import Refused
from shared.receive.shopify.settings import ShopifyShopConfig
from shared.receive.signatures import verify_hmac_base64

PLATFORM = "shopify"
# Shopify waits 5 s for an answer: every Firestore and Pub/Sub call of a delivery shares this
# budget, so a slow dependency becomes a 503 that Shopify retries, not a timeout it counts.
IO_SECONDS = budgets.SHOPIFY_IO_SECONDS
# Defaults of SHOPIFY_MAX_ORDER_AGE_DAYS and SHOPIFY_MAX_BODY_BYTES (see .settings).
MAX_ORDER_AGE = dt.timedelta(days=7)
MAX_BODY_BYTES = 4_194_304

# How a delivery came: over HTTPS the HMAC authenticates it, over Pub/Sub IAM does (see .pubsub).
VIA_HTTPS = "https"
VIA_PUBSUB = "pubsub"

ORDERS_CREATE = "orders/create"
ORDERS_PAID = "orders/paid"
ORDERS_CANCELLED = "orders/cancelled"
REFUNDS_CREATE = "refunds/create"
CHECKOUTS_CREATE = "checkouts/create"
CUSTOMERS_CREATE = "customers/create"
CUSTOMERS_DATA_REQUEST = "customers/data_request"
CUSTOMERS_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"
PRIVACY_TOPICS = frozenset({CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT, SHOP_REDACT})


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
    # Set by our entry point, never read from the request: which proof of the sender applies.
    via: str = VIA_HTTPS

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], via: str = VIA_HTTPS) -> Delivery:
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


def find_shop(delivery: Delivery, body: bytes | None, shops: Mapping[str, ShopifyShopConfig]) -> ShopifyShopConfig:
    """The served shop that provably sent ``body``, or :class:`Refused` (401) saying why not.

    Nothing else may happen to a refused delivery. Over HTTPS the HMAC is the proof.
    Over Pub/Sub IAM already gave it, but the publisher grant is Shopify's account as a
    whole (any shop could be set to publish here), so the shop must still be served, and
    a message without a topic or a readable body can never be processed: refused for good
    (acknowledged by the caller rather than answered 401, which Pub/Sub would only redeliver).
    """
    pubsub = delivery.via == VIA_PUBSUB
    if not delivery.shop_domain:
        if pubsub:
            raise _unauthorized("message without an X-Shopify-Shop-Domain attribute")
        raise _unauthorized("missing X-Shopify-Shop-Domain header")
    shop = shops.get(shop_key(delivery.shop_domain))
    if shop is None:
        raise _unauthorized(
            f"unknown shop {delivery.shop_domain!r}: not configured (SHOPIFY_SHOP_DOMAIN or PIPELINE_TENANTS)"
        )
    if pubsub:
        if not delivery.topic:
            raise _unauthorized("message without an X-Shopify-Topic attribute")
        if body is None:
            raise _unauthorized("message data is missing or not base64")
        return shop
    if not delivery.hmac:
        raise _unauthorized("missing X-Shopify-Hmac-Sha256 header")
    if body is None or not verify_hmac_base64(body, delivery.hmac, [s.get_secret_value() for s in shop.secrets]):
        raise _unauthorized("X-Shopify-Hmac-Sha256 does not match the body for any of the shop's secrets")
    return shop


def _unauthorized(reason: str) -> Refused:
    return Refused(401, "unauthorized", reason)

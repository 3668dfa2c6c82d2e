"""Shopify webhooks delivered through Google Cloud Pub/Sub, into the same path as HTTPS deliveries.

Shopify publishes each webhook as one message on a topic of ours, as
``delivery@shopify-pubsub-webhooks.iam.gserviceaccount.com``: the ``X-Shopify-*``
headers become message attributes, the body the message data. IAM is what
authenticates it, twice: only Shopify's account may publish on the topic, and
only our push subscription's identity may invoke the entry point that reads it
(``shopify_pubsub``, deployed apart from the public HTTPS endpoint; see
terraform/pubsub.tf). So there is no HMAC to check here; the shop named by
``X-Shopify-Shop-Domain`` must still be one this deployment serves.

Steps: :func:`read_push` bounds and parses the push request, :func:`delivery_of`
maps the message to a :class:`~shared.shopify.Delivery` and its body, and
:func:`handle_push` hands a usable one to :func:`shared.shopify.handle_verified`,
exactly where an HTTPS delivery goes after its HMAC check. Redeliveries need no
delivery claim: the sender's claim on each order event_id and the record
claims behind that path make every topic idempotent.

Reply rule (Pub/Sub acknowledges 2xx and redelivers anything else):

- 200 for every message whose fate is settled: done, or refused for good
  (unknown shop, no topic, data that is no JSON object), logged as
  ``rejected`` with the reason: redelivering the same message cannot help;
- 503 when Firestore or the events topic failed: Pub/Sub redelivers with backoff, and after
  max_delivery_attempts moves the message to the dead-letter topic;
- 4xx (400, 413) for a request that is no Pub/Sub push of a message we could
  hold at all: Pub/Sub never sends one, except a message above
  SHOPIFY_MAX_BODY_BYTES, which ends in the dead-letter topic, kept.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.config import ShopifyShopConfig, Tenants
from shared.domain.untrusted import BodyTooLarge, UnsafeInput, parse_json, read_body
from shared.infra import log
from shared.shopify import Delivery, Reply, Runtime, handle_verified

VIA = "pubsub"
# The push wraps the body in base64 inside JSON, beside attributes and ids.
_PUSH_OVERHEAD_BYTES = 65_536
_MAX_ATTRIBUTES = 100


class PushRefused(Exception):
    """The request is not a Pub/Sub push we can read; ``status`` is the 4xx to answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class PushMessage:
    """One pushed message, still unjudged: attributes and data as Pub/Sub carried them."""

    message_id: str | None
    attributes: Mapping[str, Any]
    data: Any


def max_push_bytes(max_body_bytes: int) -> int:
    """The push size that can carry a body of ``max_body_bytes`` (base64 grows it by a third)."""
    return (max_body_bytes + 2) // 3 * 4 + _PUSH_OVERHEAD_BYTES


def read_push(read: Callable[[int], bytes], declared_length: int | None, max_body_bytes: int) -> PushMessage:
    """The message of a push request, bounded while read; :class:`PushRefused` when it is none."""
    try:
        raw = read_body(read, max_push_bytes(max_body_bytes), declared_length)
        body = parse_json(raw, surrogates="replace")
    except BodyTooLarge as exc:
        raise PushRefused(exc.reason + " (SHOPIFY_MAX_BODY_BYTES)", exc.status) from None
    except UnsafeInput as exc:
        raise PushRefused(exc.reason) from None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict):
        raise PushRefused("expected a JSON object with a message object (the body of a Pub/Sub push)")
    candidate = message.get("messageId", message.get("message_id"))
    message_id = candidate[:200] if isinstance(candidate, str) and candidate else None
    attributes = message.get("attributes")
    return PushMessage(message_id, attributes if isinstance(attributes, dict) else {}, message.get("data"))


def delivery_of(message: PushMessage) -> tuple[Delivery, bytes | None]:
    """The delivery its attributes describe, and the body (None when the data is not base64)."""
    headers = {str(k): v for k, v in list(message.attributes.items())[:_MAX_ATTRIBUTES] if isinstance(v, str)}
    delivery = Delivery.from_headers(headers, via=VIA)
    if not isinstance(message.data, str):
        return delivery, None
    try:
        return delivery, base64.b64decode(message.data, validate=True)
    except (binascii.Error, ValueError):
        return delivery, None


def admit(delivery: Delivery, body: bytes | None, tenants: Tenants) -> ShopifyShopConfig | str:
    """The served shop a message is for, or why it can never be processed (like :func:`shared.shopify.authenticate`)."""
    if not delivery.shop_domain:
        return "message without an X-Shopify-Shop-Domain attribute"
    shop = tenants.shopify_shop(delivery.shop_domain)
    if shop is None:
        # The publisher grant is Shopify's account as a whole: any shop could be set to publish here.
        return f"unknown shop {delivery.shop_domain!r}: not configured (SHOPIFY_SHOP_DOMAIN or PIPELINE_TENANTS)"
    if not delivery.topic:
        return "message without an X-Shopify-Topic attribute"
    if body is None:
        return "message data is missing or not base64"
    return shop


def handle_push(message: PushMessage, runtime: Runtime, now: Callable[[], float] = time.time) -> Reply:
    """One pushed Shopify message to its reply. Never raises."""
    delivery, body = delivery_of(message)
    shop = admit(delivery, body, runtime.tenants)
    if isinstance(shop, str) or body is None:
        reason = shop if isinstance(shop, str) else "message data is missing"
        # Acknowledged: the same message again would be refused again, until the dead-letter topic.
        log.outcome("rejected", reason, status=200, message_id=message.message_id, **delivery.log_fields())
        return Reply(200, {"outcome": "rejected", "reason": reason})
    return handle_verified(delivery, shop, body, runtime, now, message_id=message.message_id)

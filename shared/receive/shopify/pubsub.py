"""Shopify webhooks delivered through Google Cloud Pub/Sub, into the same path as HTTPS deliveries.

Shopify publishes each webhook as one message on a topic of ours (the ``X-Shopify-*`` headers
as attributes, the body as data). IAM authenticates it, so there is no HMAC; the push request
is read and judged here, then :func:`.handler.handle_verified` takes over as after an HMAC check.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import flask

from shared.infra.http import Refused, Reply
from shared.infra.pubsub import PushRefused, read_push
from shared.outcome import Kind, Outcome
from shared.receive.shopify.handler import handle_verified
from shared.receive.shopify.request import VIA_PUBSUB, Delivery, find_shop
from shared.receive.shopify.runtime import Runtime

VIA = VIA_PUBSUB
# The push wraps the body in base64 inside JSON, beside attributes and ids.
_PUSH_OVERHEAD_BYTES = 65_536
_MAX_ATTRIBUTES = 100


@dataclass(frozen=True)
class PushMessage:
    """One pushed message, still unjudged: attributes and data as Pub/Sub carried them."""

    message_id: str | None
    attributes: Mapping[str, Any]
    data: Any


def max_push_bytes(max_body_bytes: int) -> int:
    """The push size that can carry a body of ``max_body_bytes`` (base64 grows it by a third)."""
    return (max_body_bytes + 2) // 3 * 4 + _PUSH_OVERHEAD_BYTES


def push_message(read: Callable[[int], bytes], declared_length: int | None, max_body_bytes: int) -> PushMessage:
    """The message of a push request (:func:`~shared.infra.pubsub.read_push`), its size bounded by the body's."""
    limit = max_push_bytes(max_body_bytes)
    message, message_id = read_push(
        read, declared_length, limit, limit_name="SHOPIFY_MAX_BODY_BYTES", message_object=True
    )
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


def handle_push_request(request: flask.Request, runtime: Callable[[], Runtime]) -> Reply:
    """The Pub/Sub function's request to its reply (see :func:`receive_push`)."""
    return receive_push(request.stream.read, request.content_length, runtime())


def receive_push(read: Callable[[int], bytes], declared_length: int | None, runtime: Runtime) -> Reply:
    """One push request to its reply: a 4xx when it is no push we can hold, else :func:`handle_push`."""
    try:
        message = push_message(read, declared_length, runtime.max_body_bytes)
    except PushRefused as exc:
        outcome = Outcome(Kind.REJECTED, exc.reason, details={"status": exc.status, "via": VIA})
        return Reply(exc.status, {"error": "not a Pub/Sub push", "reason": exc.reason}, outcome=outcome)
    return handle_push(message, runtime)


def handle_push(message: PushMessage, runtime: Runtime, now: Callable[[], float] = time.time) -> Reply:
    """One pushed Shopify message to its reply. Never raises.

    IAM authenticates it twice: only Shopify's account
    (``delivery@shopify-pubsub-webhooks.iam.gserviceaccount.com``) may publish on the topic,
    and only our push subscription's identity may invoke the entry point that
    reads it (``shopify_pubsub``, deployed apart from the public HTTPS endpoint;
    see terraform/pubsub.tf). Redeliveries need no delivery claim: the sender's
    claim on each order event_id and the record claims behind
    :func:`.handler.handle_verified` make every topic idempotent.

    Reply rule (Pub/Sub acknowledges 2xx and redelivers anything else):

    - 200 for every message whose fate is settled: done, or refused for good
      (unknown shop, no topic, data that is no JSON object), logged as
      ``rejected`` with the reason: redelivering the same message cannot help;
    - 503 when Firestore or the events topic failed: Pub/Sub redelivers with backoff, and after
      max_delivery_attempts moves the message to the dead-letter topic;
    - 4xx (400, 413, :func:`receive_push`) for a request that is no Pub/Sub push of a message we
      could hold at all: Pub/Sub never sends one, except a message above
      SHOPIFY_MAX_BODY_BYTES, which ends in the dead-letter topic, kept.
    """
    delivery, body = delivery_of(message)
    try:
        shop = find_shop(delivery, body, runtime.shops)
        if body is None:  # find_shop refuses it already; said again for the type checker
            raise Refused(400, "invalid message", "message data is missing")
    except Refused as refused:
        # Acknowledged: the same message again would be refused again, until the dead-letter topic.
        details = {"status": 200, "message_id": message.message_id, **delivery.log_fields()}
        outcome = Outcome(Kind.REJECTED, refused.reason, details=details)
        return Reply(200, {"outcome": Kind.REJECTED, "reason": refused.reason}, outcome=outcome)
    return handle_verified(delivery, shop, body, runtime, now, message_id=message.message_id)

"""Shopify webhooks -> TikTok events: a thin adapter over :mod:`shared.shopify`.

Two entry points, one per delivery method, each deployed as its own function:
``shopify_webhook`` is the public HTTPS endpoint (authenticated by the HMAC),
``shopify_pubsub`` the push target of the Shopify delivery topic's subscription
(authenticated by IAM: only the push identity may invoke it, so it never faces
the public; see :mod:`shared.shopify_pubsub`). Both end in the same verified-delivery path.

GET /metrics serves the instance counters when EXPOSE_METRICS is set (see shared.infra.metrics); any other
GET is the health check; POST is a webhook delivery. Settings and
clients are made once per instance, on first use (see :func:`runtime`).
The body is read up to SHOPIFY_MAX_BODY_BYTES before anything else: the
signature check needs all of it, so the limit is what bounds an unsigned
request's memory (413 without reading further, chunked or not).
"""

from __future__ import annotations

import threading

import functions_framework

from shared import shopify
from shared import shopify_pubsub as pubsub_delivery
from shared.config import ConfigError
from shared.domain.untrusted import BodyTooLarge, read_body
from shared.infra import log
from shared.infra.http import refusal
from shared.infra.metrics import metrics_reply

_runtime: shopify.Runtime | None = None
_lock = threading.Lock()


def runtime() -> shopify.Runtime:
    """This instance's settings and clients (tests reset them with :func:`reset`)."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = shopify.Runtime.from_env()
    return _runtime


def reset() -> None:
    global _runtime
    _runtime = None


def _not_a_delivery(request):
    """The reply to anything but a POST (health check, counters, other methods), else None."""
    if request.method == "GET":
        return metrics_reply(request.path) or ({"status": "ok"}, 200)
    if request.method != "POST":
        return {"error": "method not allowed", "reason": "webhooks are POST requests"}, 405, {"Allow": "GET, POST"}
    return None


def _configured(name: str) -> shopify.Runtime | None:
    try:
        return runtime()
    except ConfigError as exc:
        log.error(f"{name} is misconfigured", reason=str(exc))
        return None


_MISCONFIGURED = {"error": "misconfigured", "reason": "the webhook's settings are invalid; see its logs"}, 503


@functions_framework.http
@log.traced
def shopify_webhook(request):
    if (reply := _not_a_delivery(request)) is not None:
        return reply
    current = _configured("shopify_webhook")
    if current is None:
        return _MISCONFIGURED
    delivery = shopify.Delivery.from_headers(request.headers)
    try:
        body = read_body(request.stream.read, current.max_body_bytes, request.content_length)
    except BodyTooLarge as exc:
        log.outcome("rejected", exc.reason, status=413, **delivery.log_fields())
        return refusal({"error": "payload too large", "reason": exc.reason}, 413)
    reply = shopify.handle(delivery, body, current)
    return reply.body, reply.status


@functions_framework.http
@log.traced
def shopify_pubsub(request):
    """A push of the Shopify delivery topic's subscription: 2xx acknowledges, 503 has Pub/Sub redeliver."""
    if (reply := _not_a_delivery(request)) is not None:
        return reply
    current = _configured("shopify_pubsub")
    if current is None:  # messages wait in Pub/Sub until the settings are fixed
        return _MISCONFIGURED
    try:
        message = pubsub_delivery.read_push(request.stream.read, request.content_length, current.max_body_bytes)
    except pubsub_delivery.PushRefused as exc:
        log.outcome("rejected", exc.reason, status=exc.status, via=pubsub_delivery.VIA)
        return refusal({"error": "not a Pub/Sub push", "reason": exc.reason}, exc.status)
    reply = pubsub_delivery.handle_push(message, current)
    return reply.body, reply.status

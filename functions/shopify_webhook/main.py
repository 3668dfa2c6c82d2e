"""Shopify webhooks -> TikTok events: a thin adapter over :mod:`shared.shopify`.

GET /metrics serves the instance counters when EXPOSE_METRICS is set (see shared.metrics); any other
GET is the health check; POST is a webhook delivery. Settings and
clients are made once per instance, on first use (see :func:`runtime`).
The body is read up to SHOPIFY_MAX_BODY_BYTES before anything else: the
signature check needs all of it, so the limit is what bounds an unsigned
request's memory (413 without reading further, chunked or not).
"""

from __future__ import annotations

import threading

import functions_framework

from shared import log, shopify
from shared.config import ConfigError
from shared.http import refusal
from shared.metrics import metrics_reply
from shared.untrusted import BodyTooLarge, read_body

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


@functions_framework.http
def shopify_webhook(request):
    if request.method == "GET":
        return metrics_reply(request.path) or ({"status": "ok"}, 200)
    if request.method != "POST":
        return {"error": "method not allowed", "reason": "webhooks are POST requests"}, 405, {"Allow": "GET, POST"}
    try:
        current = runtime()
    except ConfigError as exc:
        log.error("shopify_webhook is misconfigured", reason=str(exc))
        return {"error": "misconfigured", "reason": "the webhook's settings are invalid; see its logs"}, 503
    delivery = shopify.Delivery.from_headers(request.headers)
    try:
        body = read_body(request.stream.read, current.max_body_bytes, request.content_length)
    except BodyTooLarge as exc:
        log.outcome("rejected", exc.reason, status=413, **delivery.log_fields())
        return refusal({"error": "payload too large", "reason": exc.reason}, 413)
    reply = shopify.handle(delivery, body, current)
    return reply.body, reply.status

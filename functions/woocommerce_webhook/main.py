"""WooCommerce webhooks -> TikTok Purchase events: a thin adapter over :mod:`shared.woocommerce`.

GET /metrics serves the instance counters when EXPOSE_METRICS is set (see shared.infra.metrics); any other
GET is the health check; POST is a webhook delivery or the setup
ping. Settings and clients are made once per instance, on first use (see
:func:`runtime`); the ping needs neither.
"""

from __future__ import annotations

import threading

import functions_framework

from shared import woocommerce
from shared.domain.untrusted import BodyTooLarge, read_body
from shared.infra import log
from shared.infra.http import refusal
from shared.infra.metrics import metrics_reply

_runtime: woocommerce.Runtime | None = None
_lock = threading.Lock()


def runtime() -> woocommerce.Runtime:
    """This instance's settings and clients (tests reset them with :func:`reset`)."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = woocommerce.Runtime.from_env()
    return _runtime


def reset() -> None:
    global _runtime
    _runtime = None


@functions_framework.http
@log.traced
def woocommerce_webhook(request):
    if request.method == "GET":
        return metrics_reply(request.path) or ({"status": "ok"}, 200)
    if request.method != "POST":
        return {"error": "method not allowed", "reason": "webhooks are POST requests"}, 405, {"Allow": "GET, POST"}
    try:
        # Read before authentication but never past the limit: a chunked body has no Content-Length to check.
        body = read_body(request.stream.read, woocommerce.MAX_BODY_BYTES, request.content_length)
    except BodyTooLarge as exc:
        return refusal({"error": "too large", "reason": exc.reason}, 413)
    reply = woocommerce.handle(request.headers, body, runtime)
    return reply.body, reply.status

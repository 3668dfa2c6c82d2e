"""WooCommerce webhooks -> TikTok Purchase events: a thin adapter over :mod:`shared.woocommerce`.

GET /metrics serves the instance counters when EXPOSE_METRICS is set (see shared.metrics); any other
GET is the health check; POST is a webhook delivery or the setup
ping. Settings and clients are made once per instance, on first use (see
:func:`runtime`); the ping needs neither.
"""

from __future__ import annotations

import threading

import functions_framework

from shared import woocommerce
from shared.metrics import metrics_reply

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
def woocommerce_webhook(request):
    if request.method == "GET":
        return metrics_reply(request.path) or ({"status": "ok"}, 200)
    if request.method != "POST":
        return {"error": "method not allowed", "reason": "webhooks are POST requests"}, 405, {"Allow": "GET, POST"}
    if (request.content_length or 0) > woocommerce.MAX_BODY_BYTES:
        return {"error": "too large", "reason": f"body over {woocommerce.MAX_BODY_BYTES} bytes"}, 413
    reply = woocommerce.handle(request.headers, request.get_data(cache=False), runtime)
    return reply.body, reply.status

"""Shopify webhooks -> TikTok events: a thin adapter over :mod:`shared.receive.shopify`.

Two entry points, one per delivery method, each deployed as its own function:
``shopify_webhook`` is the public HTTPS endpoint (authenticated by the HMAC),
``shopify_pubsub`` the push target of the Shopify delivery topic's subscription
(authenticated by IAM: only the push identity may invoke it, so it never faces
the public; see :mod:`shared.receive.shopify.pubsub`). Both end in the same verified-delivery path.

GET /metrics serves the instance counters when EXPOSE_METRICS is set (see shared.infra.metrics); any other
GET is the health check; POST is a webhook delivery. Settings and
clients are made once per instance, on first use (``PerInstance``). Each
request's outcome line is logged here, once.
"""

from __future__ import annotations

import functions_framework
from flask import Request
from flask.typing import ResponseReturnValue

from shared.config import ConfigError
from shared.infra import log
from shared.infra.http import headers_of
from shared.infra.instance import PerInstance
from shared.infra.metrics import metrics_reply
from shared.receive import shopify

_runtime = PerInstance(shopify.Runtime.from_env)
reset = _runtime.reset  # tests change the environment between apps


def runtime() -> shopify.Runtime:
    """This instance's settings and clients (tests reset them with :func:`reset`)."""
    return _runtime.get()


def _not_a_delivery(request: Request) -> ResponseReturnValue | None:
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
def shopify_webhook(request: Request) -> ResponseReturnValue:
    if (reply := _not_a_delivery(request)) is not None:
        return reply
    current = _configured("shopify_webhook")
    if current is None:
        return _MISCONFIGURED
    return shopify.receive(headers_of(request), request.stream.read, request.content_length, current).answer()


@functions_framework.http
@log.traced
def shopify_pubsub(request: Request) -> ResponseReturnValue:
    """A push of the Shopify delivery topic's subscription: 2xx acknowledges, 503 has Pub/Sub redeliver."""
    if (reply := _not_a_delivery(request)) is not None:
        return reply
    current = _configured("shopify_pubsub")
    if current is None:  # messages wait in Pub/Sub until the settings are fixed
        return _MISCONFIGURED
    return shopify.receive_push(request.stream.read, request.content_length, current).answer()

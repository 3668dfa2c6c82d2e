"""WooCommerce webhooks -> TikTok Purchase events: a thin adapter over :mod:`shared.receive.woocommerce`.

GET /metrics serves the instance counters when EXPOSE_METRICS is set (see shared.infra.metrics); any other
GET is the health check; POST is a webhook delivery or the setup
ping. Settings and clients are made once per instance, on first use (see
:func:`runtime`); the ping needs neither.
"""

from __future__ import annotations

import functions_framework
from flask import Request
from flask.typing import ResponseReturnValue

from shared.config import ConfigError
from shared.domain.untrusted import BodyTooLarge, read_body
from shared.infra import log
from shared.infra.http import Reply, headers_of, refusal
from shared.infra.instance import PerInstance
from shared.infra.metrics import metrics_reply
from shared.receive import woocommerce as domain

_runtime = PerInstance(domain.Runtime.from_env)
reset = _runtime.reset  # tests change the environment between apps


def runtime() -> domain.Runtime:
    """This instance's settings and clients (tests reset them with :func:`reset`)."""
    return _runtime.get()


@functions_framework.http
@log.traced
def woocommerce_webhook(request: Request) -> ResponseReturnValue:
    if request.method == "GET":
        return metrics_reply(request.path) or ({"status": "ok"}, 200)
    if request.method != "POST":
        return {"error": "method not allowed", "reason": "webhooks are POST requests"}, 405, {"Allow": "GET, POST"}
    try:
        # Read before authentication but never past the limit: a chunked body has no Content-Length to check.
        body = read_body(request.stream.read, domain.MAX_BODY_BYTES, request.content_length)
    except BodyTooLarge as exc:
        return refusal({"error": "too large", "reason": exc.reason}, 413)
    try:
        reply = domain.handle(headers_of(request), body, runtime)
    except ConfigError as exc:
        log.error("woocommerce_webhook is misconfigured", reason=str(exc))
        reply = Reply(503, {"error": "misconfigured", "reason": "the webhook's settings are invalid; see its logs"})
    return reply.answer()

"""Browser events -> click contexts and TikTok events: a thin adapter over :mod:`shared.receive.collect`.

GET /metrics serves the instance counters when EXPOSE_METRICS is set (see shared.infra.metrics); any other
GET is the health check; OPTIONS is a CORS preflight; POST is a
collect request (JSON, as ``application/json`` or ``text/plain`` for
``navigator.sendBeacon``). Settings and clients are made once per instance, on
first use (``PerInstance``).
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
from shared.receive import collect as domain

_runtime = PerInstance(domain.Runtime.from_env)
reset = _runtime.reset  # tests change the environment between apps


@functions_framework.http
@log.traced
def collect(request: Request) -> ResponseReturnValue:
    if request.method in ("GET", "HEAD"):
        return metrics_reply(request.path) or ({"status": "ok"}, 200)
    try:
        current = _runtime.get()
    except ConfigError as exc:
        log.error("collect is misconfigured", reason=str(exc))
        return {"error": "misconfigured", "reason": "the endpoint's settings are invalid; see its logs"}, 503
    incoming = domain.HttpRequest(
        method=request.method,
        # werkzeug's headers look names up case-insensitively, without copying them all per request.
        headers=headers_of(request),
        read=request.stream.read,
        remote_addr=request.remote_addr,
    )
    reply = domain.handle(incoming, current)
    domain.log_reply(reply, incoming)
    # A 4xx may come before the body was read (413, 429, 403): the reply keeps it unread.
    return reply.response()

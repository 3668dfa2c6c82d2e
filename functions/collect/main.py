"""Browser events -> click contexts and TikTok events: a thin adapter over :mod:`shared.receive.collect`.

GET /metrics serves the instance counters when EXPOSE_METRICS is set (see shared.infra.metrics); any other
GET is the health check; OPTIONS is a CORS preflight; POST is a
collect request (JSON, as ``application/json`` or ``text/plain`` for
``navigator.sendBeacon``). Settings and clients are made once per instance, on
first use (see :func:`runtime`).
"""

from __future__ import annotations

import threading

import functions_framework

from shared.config import ConfigError
from shared.infra import log
from shared.infra.http import refusal
from shared.infra.metrics import metrics_reply
from shared.receive import collect as domain

_runtime: domain.Runtime | None = None
_lock = threading.Lock()


def runtime() -> domain.Runtime:
    """This instance's settings and clients (tests reset them with :func:`reset`)."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = domain.Runtime.from_env()
    return _runtime


def reset() -> None:
    global _runtime
    _runtime = None


@functions_framework.http
@log.traced
def collect(request):
    if request.method in ("GET", "HEAD"):
        return metrics_reply(request.path) or ({"status": "ok"}, 200)
    try:
        current = runtime()
    except ConfigError as exc:
        log.error("collect is misconfigured", reason=str(exc))
        return {"error": "misconfigured", "reason": "the endpoint's settings are invalid; see its logs"}, 503
    incoming = domain.HttpRequest(
        method=request.method,
        # werkzeug's headers look names up case-insensitively, without copying them all per request.
        headers=request.headers,
        read=request.stream.read,
        remote_addr=request.remote_addr,
    )
    reply = domain.handle(incoming, current)
    domain.log_reply(reply, incoming)
    if reply.status >= 400:  # may be refused before the body was read (413, 429, 403): keep it unread
        return refusal(reply.body, reply.status, reply.headers)
    return (reply.body if reply.body is not None else ""), reply.status, reply.headers

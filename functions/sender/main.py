"""Sender: Pub/Sub push -> TikTok Events API, each event delivered once (see shared/delivery.py).

A Pub/Sub push POSTs one message (one envelope) as JSON. Answering 2xx
acknowledges it (sent, duplicate, dead-lettered, malformed and recorded);
answering 503 makes Pub/Sub redeliver it (transient TikTok or Firestore
trouble, a misconfigured sender). A body that is not a push at all (too
large, not bounded JSON, no ``message`` object) is answered 4xx with the
reason: Pub/Sub never sends one. GET on any path answers ``{"status": "ok"}``;
``GET /metrics`` answers this instance's counters.

An HTTP function rather than a CloudEvent one: functions-framework would
parse the body itself, unbounded, before any of this code runs.
"""

from __future__ import annotations

import threading

import functions_framework
from flask import Request, abort, jsonify

from shared.config import ConfigError, SenderSettings
from shared.delivery import COUNTERS, REFUSED, PushRefused, Sender, read_push
from shared.infra import log
from shared.infra.http import refusal

_sender: Sender | None = None
_lock = threading.Lock()


def dependencies() -> Sender:
    """The instance's sender (settings, Firestore and httpx clients), built on first use."""
    global _sender
    if _sender is None:
        with _lock:
            if _sender is None:
                settings = SenderSettings.from_env()
                log.set_level(settings.log_level)
                _sender = Sender.from_settings(settings)
    return _sender


def reset() -> None:
    """Forget the instance's sender (tests change the environment between apps)."""
    global _sender
    with _lock:
        if _sender is not None:
            _sender.client.close()
        _sender = None


def _get(request: Request):
    if request.path.rstrip("/") == "/metrics":
        batching = None if _sender is None else _sender.dispatcher.batching
        return jsonify(counters=COUNTERS.snapshot(), batching=batching)
    return jsonify(status="ok")


@functions_framework.http
@log.traced
def sender(request: Request):
    if request.method in ("GET", "HEAD"):
        return _get(request)
    if request.method != "POST":
        return refusal(
            {"error": "method not allowed", "reason": "Pub/Sub pushes with POST"}, 405, {"Allow": "GET, POST"}
        )
    try:
        message, message_id = read_push(request.stream.read, request.content_length)
    except PushRefused as exc:
        log.outcome(REFUSED, exc.reason, status=exc.status)
        return refusal({"error": "not a Pub/Sub push", "reason": exc.reason}, exc.status)
    log.bind(message_id=message_id)  # every later line of this message, down to TikTok's request id
    attributes = message.get("attributes") if isinstance(message, dict) else None
    log.continue_trace(attributes.get("traceparent") if isinstance(attributes, dict) else None)
    try:
        instance = dependencies()
    except ConfigError as exc:  # names the variable; messages wait in Pub/Sub until it is fixed
        log.error("sender misconfigured", reason=str(exc), message_id=message_id)
        abort(503, description=f"sender misconfigured: {exc}")
    outcome = instance.handle_message(message, message_id)
    outcome.log(message_id=message_id)
    if outcome.retry:
        # Any non-2xx makes Pub/Sub redeliver; an HTTP error (not a crash) logs no traceback.
        abort(503, description=f"retry later: {outcome.reason} (event_id {outcome.event_id})")
    return jsonify(outcome=outcome.kind)

"""Sender: Pub/Sub push -> TikTok Events API, each event delivered once (see shared/send/).

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

import functions_framework
from flask import Request, Response, jsonify
from flask.typing import ResponseReturnValue

from shared.config import ConfigError, SenderSettings
from shared.infra import log
from shared.infra.http import refusal
from shared.infra.instance import PerInstance
from shared.infra.metrics import COUNTERS
from shared.send import PushRefused, Sender, handle_push, push_refused, read_push


def _build() -> Sender:
    """The instance's sender (settings, Firestore and httpx clients)."""
    settings = SenderSettings.from_env()
    log.set_level(settings.log_level)
    return Sender.from_settings(settings)


_runtime: PerInstance[Sender] = PerInstance(_build, close=lambda s: s.client.close())


def runtime() -> Sender:
    """The instance's sender, built on first use."""
    return _runtime.get()


reset = _runtime.reset  # tests change the environment between apps


def _get(request: Request) -> Response:
    if request.path.rstrip("/") == "/metrics":
        sender = _runtime.peek()
        batching = None if sender is None else sender.dispatcher.batching
        return jsonify(counters=COUNTERS.snapshot(), batching=batching)
    return jsonify(status="ok")


@functions_framework.http
@log.traced
def sender(request: Request) -> ResponseReturnValue:
    if request.method in ("GET", "HEAD"):
        return _get(request)
    if request.method != "POST":
        return refusal(
            {"error": "method not allowed", "reason": "Pub/Sub pushes with POST"}, 405, {"Allow": "GET, POST"}
        )
    try:
        message, message_id = read_push(request.stream.read, request.content_length)
    except PushRefused as exc:
        return push_refused(exc).answer()
    log.bind(message_id=message_id)  # every later line of this message, down to TikTok's request id
    attributes = message.get("attributes") if isinstance(message, dict) else None
    log.continue_trace(attributes.get("traceparent") if isinstance(attributes, dict) else None)
    try:
        instance = runtime()
    except ConfigError as exc:  # names the variable; messages wait in Pub/Sub until it is fixed
        log.error("sender misconfigured", reason=str(exc), message_id=message_id)
        return refusal({"error": "sender misconfigured", "reason": f"sender misconfigured: {exc}"}, 503)
    return handle_push(instance, message, message_id).answer()

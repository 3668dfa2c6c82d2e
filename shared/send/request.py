"""The sender function's request: a Pub/Sub push to its :class:`~shared.infra.http.Reply` (see :class:`Entry`).

A Pub/Sub push POSTs one message (one envelope) as JSON. Answering 2xx acknowledges it (sent, duplicate,
dead-lettered, malformed and recorded); answering 503 makes Pub/Sub redeliver it (transient TikTok or
Firestore trouble, a misconfigured sender). A body that is not a push at all is answered 4xx with the
reason: Pub/Sub never sends one. GET on any path answers ``{"status": "ok"}``; ``GET /metrics`` this
instance's counters and batching.
"""

from __future__ import annotations

from collections.abc import Callable

import flask
from flask.typing import ResponseReturnValue

from shared.config import ConfigError, SenderSettings
from shared.infra import log
from shared.infra.entry import Entry
from shared.infra.http import Reply, refusal
from shared.infra.instance import PerInstance
from shared.infra.metrics import COUNTERS
from shared.infra.pubsub import PushRefused, read_push
from shared.send.decode import MAX_PUSH_BYTES
from shared.send.sender import Sender, handle_push, push_refused


def build() -> Sender:
    """The instance's sender (settings, Firestore and httpx clients)."""
    settings = SenderSettings.from_env()
    log.set_level(settings.log_level)
    return Sender.from_settings(settings, requeue_topic=settings.pubsub_topic)


def handle_request(request: flask.Request, runtime: Callable[[], Sender]) -> Reply:
    """One push: read and bounded first, then the sender is built (a ConfigError is the entry point's)."""
    try:
        message, message_id = read_push(request.stream.read, request.content_length, MAX_PUSH_BYTES)
    except PushRefused as exc:
        return push_refused(exc)
    log.bind(message_id=message_id)  # every later line of this message, down to TikTok's request id
    attributes = message.get("attributes") if isinstance(message, dict) else None
    log.continue_trace(attributes.get("traceparent") if isinstance(attributes, dict) else None)
    return handle_push(runtime(), message, message_id)


def _get(request: flask.Request, sender: Sender | None) -> ResponseReturnValue:
    if request.path.rstrip("/") == "/metrics":
        batching = None if sender is None else sender.dispatcher.batching
        return flask.jsonify(counters=COUNTERS.snapshot(), batching=batching)
    return flask.jsonify(status="ok")


def _not_allowed() -> ResponseReturnValue:
    return refusal({"error": "method not allowed", "reason": "Pub/Sub pushes with POST"}, 405, {"Allow": "GET, POST"})


def _misconfigured(exc: ConfigError) -> ResponseReturnValue:
    # Names the variable; messages wait in Pub/Sub until it is fixed.
    log.error("sender misconfigured", reason=str(exc), message_id=log.context().get("message_id"))
    return refusal({"error": "sender misconfigured", "reason": f"sender misconfigured: {exc}"}, 503)


def entry(instance: PerInstance[Sender]) -> Entry[Sender]:
    """The sender's entry point over ``instance``."""
    return Entry("sender", instance, handle_request, health_methods=("GET", "HEAD"), get=_get,
                 not_allowed=_not_allowed, on_misconfigured=_misconfigured)  # fmt: skip

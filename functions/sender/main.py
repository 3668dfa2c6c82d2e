"""Sender: Pub/Sub push -> TikTok Events API, each event delivered once (see shared/delivery.py).

A Pub/Sub push (raw push JSON, converted to a CloudEvent by functions-framework)
carries one envelope. Returning acknowledges the message (sent, duplicate,
dead-lettered, malformed); answering 503 makes Pub/Sub redeliver it with
backoff (transient TikTok or Firestore trouble). GET on any path answers
``{"status": "ok"}``; ``GET /metrics`` answers this instance's counters.
"""

from __future__ import annotations

import threading

import functions_framework
from flask import abort, current_app, has_app_context, jsonify, request

from shared import log
from shared.config import ConfigError, SenderSettings
from shared.delivery import COUNTERS, Sender

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


@functions_framework.cloud_event
def sender(cloud_event) -> None:
    data = cloud_event.data
    message = data.get("message") if isinstance(data, dict) else None
    message_id = cloud_event["id"]
    try:
        instance = dependencies()
    except ConfigError as exc:  # names the variable; messages wait in Pub/Sub until it is fixed
        log.error("sender misconfigured", reason=str(exc), message_id=message_id)
        abort(503, description=f"sender misconfigured: {exc}")
    outcome = instance.handle_message(message, message_id)
    outcome.log(message_id=message_id)
    if outcome.retry:
        # Any non-2xx makes Pub/Sub redeliver with backoff; an HTTP error (not a crash) logs no traceback.
        abort(503, description=f"retry later: {outcome.reason} (event_id {outcome.event_id})")


def _get(path: str = ""):
    if request.path.rstrip("/") == "/metrics":
        batching = None if _sender is None else _sender.dispatcher.batching
        return jsonify(counters=COUNTERS.snapshot(), batching=batching)
    return jsonify(status="ok")


# functions-framework runs this module inside its app context and routes only POST
# to a CloudEvent function: add GET for health checks and metrics.
if has_app_context():
    current_app.add_url_rule("/", "sender_get", _get, methods=["GET"])
    current_app.add_url_rule("/<path:path>", "sender_get", _get, methods=["GET"])

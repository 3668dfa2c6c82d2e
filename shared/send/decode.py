"""From a Pub/Sub push to an :class:`Envelope`: the push body, the message, the envelope in it.

Separate because it is the sender's untrusted edge: its byte limit and
every malformation reason are here, and nothing here touches Firestore or TikTok.
A body that is not a push is refused (:class:`~shared.infra.pubsub.PushRefused`,
4xx; read within :data:`MAX_PUSH_BYTES` by :func:`~shared.infra.pubsub.read_push`);
a message that is not an envelope is :class:`MalformedMessage` (recorded dead, acknowledged).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from shared.domain.models import Envelope
from shared.domain.untrusted import UnsafeInput, clean_text, describe_validation, parse_json

# Pub/Sub's largest message (10 MB) base64-encoded, plus its attributes: no push is larger.
MAX_PUSH_BYTES = 14 * 1024 * 1024


class MalformedMessage(ValueError):
    """The message is not a valid envelope; the reason names fields, never values."""

    def __init__(self, reason: str, ids: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = clean_text(reason)
        self.ids = {key: clean_text(value) for key, value in (ids or {}).items()}


def _safe_ids(document: Any) -> dict[str, str]:
    """Routing ids of a broken envelope (never personal data), to help find its origin."""
    if not isinstance(document, dict):
        return {}
    return {
        key: clean_text(document[key][:200])
        for key in ("pixel_code", "event", "event_id", "source")
        if isinstance(document.get(key), str)
    }


def envelope_ids(data: bytes) -> dict[str, str]:
    """The routing ids (pixel, event, event id, source) of raw envelope JSON, as far as it has them."""
    try:
        return _safe_ids(parse_json(data, surrogates="replace"))
    except UnsafeInput:
        return {}


def decode_message(message: Any) -> Envelope:
    """The envelope in a Pub/Sub message (``data`` is base64 JSON), or :class:`MalformedMessage`."""
    if not isinstance(message, Mapping):
        raise MalformedMessage("not a Pub/Sub message: expected an object with message.data")
    data = message.get("data")
    if not isinstance(data, (str, bytes)) or not data:
        raise MalformedMessage("message.data is missing or empty")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage("message.data is not valid base64") from None
    try:
        # A lone surrogate would break the request to TikTok and the dead record alike;
        # the event is still worth sending with U+FFFD in that one field.
        document = parse_json(raw, surrogates="replace")
    except UnsafeInput as exc:
        raise MalformedMessage(f"message.data is not JSON the sender accepts: {exc.reason}") from None
    if not isinstance(document, dict):
        raise MalformedMessage("message.data is JSON but not an object (an envelope is an object)")
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        raise MalformedMessage(describe_validation(exc, "envelope")[:1500], _safe_ids(document)) from None

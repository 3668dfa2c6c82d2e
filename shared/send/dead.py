"""Dead records (``dead_events``): what the sender keeps of an event it could not deliver, for re-driving.

Separate from the claims because it is what an operator reads: the document
of each kind of dead event, and the one thing never kept (a malformed
message's bytes, which may hold raw PII). Pure: :class:`shared.send.claims.ClaimStore`
writes these documents, in the same bulk write as the claims they end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from shared.domain.models import Envelope
from shared.domain.untrusted import clean_text
from shared.infra.store import TTL_FIELD
from shared.send.decode import MalformedMessage

# Dead record kinds.
KIND_REJECTED = "rejected"
KIND_MISSING_TOKEN = "missing_token"  # noqa: S105 (a record kind, not a secret)
KIND_MALFORMED = "malformed"
KIND_UNSENDABLE = "unsendable"  # valid envelope that could not be turned into an Events API request


@dataclass
class DeadRecord:
    """An event the sender gives up on until a person re-drives it (same key as its claim).

    Its document keeps the envelope JSON, ``kind``, ``reason``, TikTok's ``code``
    and ``message``, ``dead_at``, ``attempts`` and ``state`` (``dead``, or
    ``redriven`` once republished); the sender deletes it once a re-drive of it
    (source ``redrive``) is delivered or found already delivered.
    """

    envelope: Envelope
    kind: str
    reason: str
    code: int | None = None
    message: str | None = None
    request_id: str | None = None
    message_id: str | None = None


def _envelope_json(envelope: Envelope) -> str | None:
    """The envelope as JSON for its dead record, or None when it will not serialise (kept: its ids)."""
    try:
        return envelope.model_dump_json(exclude_none=True)
    except ValueError:  # pydantic_core's serialisation errors are ValueErrors
        return None


def dead_document(record: DeadRecord, now: dt.datetime, ttl: dt.timedelta, attempts: Any) -> dict[str, Any]:
    """The dead record of an envelope; ``attempts`` is the store's increment (a re-death counts on)."""
    envelope = record.envelope
    envelope_json = _envelope_json(envelope)
    return {
        "state": "dead",
        "kind": record.kind,
        "reason": clean_text(record.reason),
        "code": record.code,
        "message": None if record.message is None else clean_text(record.message),
        "request_id": record.request_id,
        "message_id": record.message_id,
        "pixel_code": clean_text(envelope.pixel_code),
        "event": clean_text(envelope.event),
        "event_id": clean_text(envelope.event_id),
        "source": envelope.source,
        "test_event_code": None if envelope.test_event_code is None else clean_text(envelope.test_event_code),
        "event_time": envelope.event_time,
        "envelope": envelope_json,
        "redrivable": envelope_json is not None,
        "dead_at": now,
        "attempts": attempts,
        TTL_FIELD: now + ttl,
    }


def malformed_record(
    message_id: str | None, error: MalformedMessage, data: Any, now: dt.datetime, ttl: dt.timedelta
) -> tuple[tuple[str, str], dict[str, Any]]:
    """The key and dead record of a message that is not an envelope: its digest and size, never its bytes."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data if isinstance(data, bytes) else b""
    digest = hashlib.sha256(raw).hexdigest()
    key = ("malformed", clean_text(message_id) if message_id else digest)
    document = {
        "state": "dead",
        "kind": KIND_MALFORMED,
        "reason": error.reason,
        "message_id": None if message_id is None else clean_text(message_id),
        "data_sha256": digest,
        "data_bytes": len(raw),
        **{name: value for name, value in error.ids.items()},
        "redrivable": False,
        "dead_at": now,
        "attempts": 1,
        TTL_FIELD: now + ttl,
    }
    return key, document

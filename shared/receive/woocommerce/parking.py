"""Parking: a signed order we could not deliver, written into its outcome line for a later replay.

WooCommerce never retries a delivery, so an order that meets Firestore or Pub/Sub
down (or a bug of ours) is logged whole, as a replay record: the envelope when
consent was decided, else the order with its identifiers hashed. Pure: this
module builds and reads the records; :func:`shared.receive.woocommerce.flow.replay` runs them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from shared.domain.consent import ConsentSnapshot
from shared.domain.events import order_event_id
from shared.domain.identity import RawIdentity, build_user
from shared.domain.models import Envelope, UserData
from shared.outcome import Kind, Outcome
from shared.receive.orders import OrderEvent

# A log field value is cut at 2000 characters and a list at 50 items (shared.infra.log).
_REPLAY_CHUNK = 1800
_REPLAY_MAX_CHUNKS = 50


def _parked(record: dict[str, Any], reason: str, event_id: str) -> Outcome:
    text = json.dumps(record, separators=(",", ":"))
    if len(text) > _REPLAY_CHUNK * _REPLAY_MAX_CHUNKS:
        # Hundreds of line items: keep what matters for attribution (value, currency, ids).
        properties = record.get("envelope", record.get("order", {})).get("properties", {})
        properties["contents"] = []
        text = json.dumps(record, separators=(",", ":"))
        reason += " (contents dropped to fit one log entry)"
    chunks = [text[i : i + _REPLAY_CHUNK] for i in range(0, len(text), _REPLAY_CHUNK)]
    # An ERROR: the order reaches TikTok only once someone replays it (terraform/monitoring.tf alerts on it).
    return Outcome(Kind.PARKED, reason, event_id, {"replay_kind": record["kind"], "replay": chunks}, severity="ERROR")


def park_envelope(envelope: Envelope, reason: str) -> Outcome:
    """The envelope (consent already decided) as a replay record: publishing it is all that is left."""
    record = {"v": 1, "kind": "envelope", "envelope": json.loads(envelope.to_json_bytes())}
    return _parked(record, reason, envelope.event_id)


def park_order(
    order: OrderEvent,
    consent: ConsentSnapshot | None,
    default_region: str | None,
    reason: str,
    *,
    with_identity: bool = True,
) -> Outcome:
    """The order with its identifiers hashed; replay runs the whole flow (join, consent, claim, publish).

    ``with_identity=False`` parks it without the shopper's identifiers, for when
    hashing them is what failed: the join keys still find the click context.
    """
    user = build_user(order.identity, default_region) if with_identity else UserData()
    record = {
        "v": 1,
        "kind": "order",
        "site": order.shop,
        "consent": consent.model_dump(exclude_none=True) if consent else None,
        "order": {
            "platform": order.platform,
            "shop": order.shop,
            "order_id": order.order_id,
            "event": order.event,
            "event_time": order.event_time,
            "user": user.model_dump(exclude_none=True, exclude_defaults=True),
            "properties": order.properties,
            "page_url": order.page_url,
            "referrer": order.referrer,
            "join_keys": [list(pair) for pair in order.join_keys],
        },
    }
    return _parked(record, reason, order.event_id)


def _identity_from_user(user: UserData) -> RawIdentity:
    """Hashed values pass through build_user unchanged (64 hex characters are never hashed again)."""
    return RawIdentity(
        emails=list(user.email),
        phones=[(phone, None) for phone in user.phone],
        external_ids=list(user.external_id),
        first_name=user.first_name,
        last_name=user.last_name,
        zip_code=user.zip_code,
        city=user.city,
        state=user.state,
        country=user.country,
        ttclid=user.ttclid,
        ttp=user.ttp,
        ip=user.ip,
        user_agent=user.user_agent,
        locale=user.locale,
    )


def order_from_record(data: Mapping[str, Any]) -> OrderEvent:
    """A parked order record as the :class:`OrderEvent` it was, its identifiers already hashed."""
    return OrderEvent(
        platform=data["platform"],
        shop=data["shop"],
        order_id=str(data["order_id"]),
        event=data["event"],
        event_time=int(data["event_time"]),
        identity=_identity_from_user(UserData.model_validate(data.get("user") or {})),
        properties=dict(data.get("properties") or {}),
        page_url=data.get("page_url"),
        referrer=data.get("referrer"),
        join_keys=[(str(kind), str(value)) for kind, value in data.get("join_keys") or []],
    )


def parked_records(text: str) -> Iterator[dict[str, Any]]:
    """Every parked record in log output: our JSON lines, or Cloud Logging entries (lines or one JSON array)."""
    text = text.strip()
    if text.startswith("["):
        try:
            entries: list[Any] = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"input starts with '[' but is not a JSON array of log entries ({exc})") from None
    else:
        entries = []
        for line in text.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # not a log record (a shell prompt, a blank line...)
    for entry in entries:
        payload = entry.get("jsonPayload", entry) if isinstance(entry, Mapping) else None
        if not isinstance(payload, Mapping) or payload.get("outcome") != Kind.PARKED:
            continue
        try:
            yield json.loads("".join(payload["replay"]))
        except (TypeError, ValueError):
            # Cut or edited on the way: reported (and counted as failed) by replay().
            yield {"kind": "unreadable", "event_id": payload.get("event_id")}


def record_event_id(record: Mapping[str, Any]) -> str | None:
    """The event_id a parked record stands for (to report on it without replaying)."""
    try:
        if record.get("kind") == "unreadable":
            return record.get("event_id")
        if record.get("kind") == "envelope":
            return str(record["envelope"]["event_id"])
        order = record["order"]
        return order_event_id(order["platform"], order["shop"], order["order_id"], order["event"])
    except (KeyError, TypeError, ValueError):
        return None

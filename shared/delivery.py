"""The sender's domain: decode a Pub/Sub message, claim the event once, batch, send, record.

One invocation of the sender carries one Pub/Sub message (one envelope). The
flow, each step a small piece testable on its own:

1. :func:`decode_message` turns the push message into an :class:`Envelope`,
   or raises :class:`MalformedMessage` (recorded as dead and acknowledged).
2. :class:`Dispatcher` coalesces concurrent invocations of one instance into
   one batch (up to ``SENDER_BATCH_MAX_EVENTS`` or ``SENDER_BATCH_WAIT_MS``,
   whichever first, or sooner when nobody joined for ``SENDER_BATCH_IDLE_MS``;
   longer, up to ``SENDER_BATCH_HOLD_MS``, while the invocations a batch in
   flight holds are still to come back: :func:`batch_due`).
   The first invocation of a batch leads it; every invocation returns only
   once its own event has an outcome. A copy of an event already in flight in
   this instance waits for that one instead.
3. :class:`Processor` handles a batch: pixels without an access token are dead
   at once; the rest is claimed in Firestore in one bulk write
   (:class:`ClaimStore`), sent with :func:`deliver` (one Events API request per
   pixel and test code, bisecting a batch that TikTok refuses because of one
   bad event), and finalized in one bulk write (sent marks, releases, dead
   records).

Claims (``event_claims``, key pixel + event + event_id, as TikTok dedups):
``state`` is ``sending`` while an attempt holds it (until ``lease_until``,
``CLAIM_LEASE_SECONDS``) and ``sent`` once TikTok accepted it (with TikTok's
``request_id`` and ``sent_at``); it also names the event's ``source`` and
the ``match_keys`` it carries (:mod:`shared.domain.match_keys`, names only), which
the ``sent`` outcome logs with its ``match_score`` and the counters count by
pixel, source and event (:func:`shared.infra.metrics.delivered_counts`), all
without a write of their own. The happy path costs two document writes per
event (create, mark sent) and two Firestore RPCs per batch. A transient
failure deletes the claim (so a redelivery can claim again); a claim whose
holder died is taken over once its lease has expired; a permanent failure
deletes the claim and writes a dead record.

For an order event this claim is the only one: the receivers publish every
delivery of an order (``orders/create`` and ``orders/paid``, retries,
concurrent duplicates) and the deterministic event_id makes them one claim
here, the first sent and the rest ``duplicate``. A cancellation that comes
first leaves a tombstone under the Purchase's key (``state`` ``cancelled``,
:func:`shared.receive.orders.block_purchase`): the Purchase is then ``skipped``.

Browser events (source ``collect``) are not claimed unless
``SENDER_CLAIM_BROWSER_EVENTS``: the same document is written once, whole and
``sent``, in the final bulk write after TikTok accepted the event (one write,
one RPC per batch). Their only copies are redeliveries of their own message:
one that comes back to this instance within ``RECENT_SECONDS`` is a duplicate
from memory, one that reaches another instance is sent again and merged by
TikTok on its event_id (48 h). Re-drives always claim, so they find the record.

Dead records (``dead_events``, same key; malformed messages keyed by message
id) hold the envelope JSON, ``kind`` (``rejected``, ``missing_token``,
``malformed``, ``unsendable``: a valid envelope that could not be written as
a request, refused alone by the same bisection as TikTok's refusals),
``reason``, TikTok's ``code`` and ``message``, ``dead_at``, ``attempts`` and
``state`` (``dead`` or ``redriven``). Re-driving resends the
envelope with ``source="redrive"``; the sender deletes the dead record once
such an envelope is delivered (or found already delivered).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from shared.domain import match_keys
from shared.domain.models import Envelope, envelopes_to_request, group_for_requests
from shared.domain.untrusted import BodyTooLarge, UnsafeInput, clean_text, parse_json, read_body
from shared.infra import log
from shared.infra.metrics import COUNTERS, Counters, delivered_counts
from shared.infra.store import DEAD_EVENTS, EVENT_CLAIMS, TTL_FIELD, doc_id, utcnow
from shared.tiktok.api import ApiResult, TikTokClient

ClaimKey = tuple[str, str, str]

# Outcome kinds, one per invocation; logged through shared.infra.log.outcome.
SENT = "sent"
DUPLICATE = "duplicate"
DEAD = "dead"
DEAD_MALFORMED = "dead_malformed"
RETRY = "retry"
REFUSED = "refused"  # a POST that is not a Pub/Sub push at all (answered 4xx, nothing recorded)
SKIPPED = "skipped"  # an order's Purchase whose claim a cancellation took first (shared.receive.orders.block_purchase)

# Dead record kinds.
KIND_REJECTED = "rejected"
KIND_MISSING_TOKEN = "missing_token"  # noqa: S105 (a record kind, not a secret)
KIND_MALFORMED = "malformed"
KIND_UNSENDABLE = "unsendable"  # valid envelope that could not be turned into an Events API request

# Pub/Sub's largest message (10 MB) base64-encoded, plus its attributes: no push is larger.
MAX_PUSH_BYTES = 14 * 1024 * 1024

# Claim states.
SENDING = "sending"
STATE_SENT = "sent"
STATE_CANCELLED = "cancelled"  # a cancellation's tombstone: the Purchase is never sent
UNCLAIMED = "unclaimed"  # a Claim's state for an event sent without one (recorded once TikTok accepted it)
# Sources whose events are sent without a claim unless SENDER_CLAIM_BROWSER_EVENTS (see Processor.claims_first).
UNCLAIMED_SOURCES = frozenset({"collect"})
RECENT_SECONDS = 15 * 60  # how long a sender instance remembers the unclaimed events it sent
RECENT_MAX = 50_000  # about 150 bytes each

# Firestore limits: 500 writes per BatchWrite request.
MAX_WRITES_PER_RPC = 500
FIRESTORE_TIMEOUT_SECONDS = 30.0
_OK, _ALREADY_EXISTS = 0, 6  # google.rpc.Code


class MalformedMessage(ValueError):
    """The message is not a valid envelope; the reason names fields, never values."""

    def __init__(self, reason: str, ids: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = clean_text(reason)
        self.ids = {key: clean_text(value) for key, value in (ids or {}).items()}


class PushRefused(ValueError):
    """A POST body that is not a Pub/Sub push (Pub/Sub never sends one): 4xx, nothing to acknowledge."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def read_push(read: Callable[[int], bytes], declared_length: int | None) -> tuple[Any, str | None]:
    """The ``message`` of a push body and its message id, or :class:`PushRefused`.

    The body is bounded while it is read and parsed with bounded depth and
    numbers. What is inside ``message`` is not judged here: a broken message
    is still a message, recorded and acknowledged by :meth:`Sender.handle_message`.
    """
    try:
        raw = read_body(read, MAX_PUSH_BYTES, declared_length)
        body = parse_json(raw, surrogates="replace")
    except BodyTooLarge as exc:
        raise PushRefused(exc.reason, exc.status) from None
    except UnsafeInput as exc:
        raise PushRefused(exc.reason) from None
    if not isinstance(body, dict) or "message" not in body:
        raise PushRefused("expected a JSON object with a message (the body of a Pub/Sub push)")
    message = body["message"]
    message_id = None
    if isinstance(message, dict):
        candidate = message.get("messageId", message.get("message_id"))
        message_id = candidate[:200] if isinstance(candidate, str) and candidate else None
    return message, message_id


# --- counters --------------------------------------------------------------


# --- outcomes --------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What happened to one message: sent, duplicate, dead, dead_malformed or retry."""

    kind: str
    reason: str
    event_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def retry(self) -> bool:
        return self.kind == RETRY

    def log(self, **fields: Any) -> None:
        log.outcome(self.kind, self.reason, event_id=self.event_id, **self.details, **fields)


def _event_details(envelope: Envelope) -> dict[str, Any]:
    return {"pixel_code": envelope.pixel_code, "event": envelope.event, "source": envelope.source}


# --- decoding --------------------------------------------------------------


def _describe_validation(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"]) or "envelope"
        problems.append(f"{where}: {error['msg']}")
    return "invalid envelope: " + "; ".join(problems)


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
        raise MalformedMessage(_describe_validation(exc)[:1500], _safe_ids(document)) from None


def _envelope_json(envelope: Envelope) -> str | None:
    """The envelope as JSON for its dead record, or None when it will not serialise (kept: its ids)."""
    try:
        return envelope.model_dump_json(exclude_none=True)
    except ValueError:  # pydantic_core's serialisation errors are ValueErrors
        return None


# --- Firestore: claims and dead records -----------------------------------


@dataclass
class Claim:
    """The claim state of one event after :meth:`ClaimStore.claim`."""

    # "claimed" (ours to send) | "sent" (already delivered) | "busy" (another attempt holds it)
    # | "cancelled" (a cancellation's tombstone: never to send)
    # | "unclaimed" (ours to send without a claim: see Processor.claims_first)
    state: str
    update_time: Any = None  # of our write, so a release never deletes someone else's claim
    attempts: int = 1
    request_id: str | None = None
    until: Any = None  # lease end of the attempt that holds a busy claim
    detail: str = ""


@dataclass
class DeadRecord:
    envelope: Envelope
    kind: str
    reason: str
    code: int | None = None
    message: str | None = None
    request_id: str | None = None
    message_id: str | None = None


@dataclass
class FinalizeReport:
    """Which finalizing writes failed (keys), so the caller can pick outcomes."""

    sent_unmarked: set[ClaimKey] = field(default_factory=set)
    dead_unrecorded: set[ClaimKey] = field(default_factory=set)


class ClaimStore:
    """Claims and dead records in Firestore, written in bulk, every operation counted."""

    def __init__(
        self,
        store: Any,
        lease: dt.timedelta,
        claim_ttl: dt.timedelta,
        dead_ttl: dt.timedelta,
        counters: Counters = COUNTERS,
    ) -> None:
        self.store = store
        self.lease = lease
        self.claim_ttl = claim_ttl
        self.dead_ttl = dead_ttl
        self.counters = counters

    def _claim_ref(self, key: ClaimKey):
        return self.store.collection(EVENT_CLAIMS).document(doc_id(*key))

    def _dead_ref(self, key: Sequence[object]):
        return self.store.collection(DEAD_EVENTS).document(doc_id(*key))

    def _bulk(self, ops: list[tuple]) -> list[tuple[int, Any]]:
        """Apply independent writes (BatchWrite: each succeeds or fails alone); (code, update_time) each."""
        from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

        results: list[tuple[int, Any]] = []
        for start in range(0, len(ops), MAX_WRITES_PER_RPC):
            batch = BulkWriteBatch(self.store.client)
            for op, ref, *args in ops[start : start + MAX_WRITES_PER_RPC]:
                if op == "create":
                    batch.create(ref, args[0])
                elif op == "update":
                    batch.update(ref, args[0], option=args[1])
                elif op == "set":
                    batch.set(ref, args[0], merge=True)
                else:
                    batch.delete(ref, option=args[0])
                self.counters.add("firestore.deletes" if op == "delete" else "firestore.writes")
            self.counters.add("firestore.rpcs")
            response = batch.commit(timeout=FIRESTORE_TIMEOUT_SECONDS)
            for status, result in zip(response.status, response.write_results, strict=True):
                results.append((status.code, result.update_time if status.code == _OK else None))
        return results

    def _get_all(self, refs: list[Any]) -> dict[str, Any]:
        self.counters.add("firestore.rpcs")
        self.counters.add("firestore.reads", len(refs))
        return {
            snap.reference.path: snap for snap in self.store.client.get_all(refs, timeout=FIRESTORE_TIMEOUT_SECONDS)
        }

    def claim(self, envelopes: Sequence[tuple[Envelope, str | None]]) -> dict[ClaimKey, Claim]:
        """Claim every event (unique keys) for this attempt; the state of each."""
        now = utcnow()
        keys = [e.claim_key() for e, _ in envelopes]

        def fresh(envelope: Envelope, message_id: str | None, attempts: int) -> dict[str, Any]:
            return {**self._record(envelope, message_id, now), "state": SENDING, "attempts": attempts,
                    "lease_until": now + self.lease}  # fmt: skip

        ops = [("create", self._claim_ref(k), fresh(e, m, 1)) for k, (e, m) in zip(keys, envelopes, strict=True)]
        claims: dict[ClaimKey, Claim] = {}
        taken: list[tuple[ClaimKey, Envelope, str | None]] = []
        for key, (envelope, message_id), (code, update_time) in zip(keys, envelopes, self._bulk(ops), strict=True):
            if code == _OK:
                claims[key] = Claim("claimed", update_time)
            elif code == _ALREADY_EXISTS:
                taken.append((key, envelope, message_id))
            else:
                claims[key] = Claim("busy", detail=f"Firestore status {code} on create")
        if not taken:
            return claims
        snapshots = self._get_all([self._claim_ref(k) for k, _, _ in taken])
        takeovers: list[tuple[ClaimKey, int, tuple]] = []
        for key, envelope, message_id in taken:
            ref = self._claim_ref(key)
            snap = snapshots.get(ref.path)
            data = snap.to_dict() if snap is not None and snap.exists else None
            if data is None:  # released in between: claim it afresh
                takeovers.append((key, 1, ("create", ref, fresh(envelope, message_id, 1))))
                continue
            expired = data.get(TTL_FIELD) is not None and data[TTL_FIELD] <= now
            if not expired and data.get("state") == STATE_SENT:
                claims[key] = Claim(STATE_SENT, request_id=data.get("request_id"), attempts=data.get("attempts", 1))
            elif not expired and data.get("state") == STATE_CANCELLED:
                claims[key] = Claim(STATE_CANCELLED)
            elif not expired and data.get("lease_until") and data["lease_until"] > now:
                claims[key] = Claim("busy", until=data["lease_until"], detail=f"lease until {data['lease_until']}")
            else:  # its holder died (lease over) or TTL has not removed it yet
                attempts = int(data.get("attempts", 1)) + 1
                option = self.store.client.write_option(last_update_time=snap.update_time)
                takeovers.append((key, attempts, ("update", ref, fresh(envelope, message_id, attempts), option)))
        if takeovers:
            for (key, attempts, _), (code, update_time) in zip(
                takeovers, self._bulk([t[2] for t in takeovers]), strict=True
            ):
                lost = Claim("busy", detail="another attempt took it over first")
                claims[key] = Claim("claimed", update_time, attempts) if code == _OK else lost
                if code == _OK and attempts > 1:
                    # The attempt that held it died or outlived its lease: this one resends.
                    self.counters.add("claims.taken_over")
                    log.info("claim taken over after its lease", event_id=key[2], attempts=attempts)
        return claims

    def _record(self, envelope: Envelope, message_id: str | None, now: dt.datetime) -> dict[str, Any]:
        """What an event's document in ``event_claims`` says about it, whatever its state."""
        return {
            "pixel_code": envelope.pixel_code,
            "event": envelope.event,
            "event_id": envelope.event_id,
            "message_id": message_id,
            # For the report (shared.report): where it came from, which match keys it carries (names only).
            "source": envelope.source,
            "match_keys": list(match_keys.present(envelope.user)),
            "created_at": now,
            TTL_FIELD: now + self.claim_ttl,
        }

    def finalize(
        self,
        sent: Sequence[tuple[Envelope, ApiResult]] = (),
        released: Sequence[tuple[Envelope, Claim]] = (),
        dead: Sequence[tuple[DeadRecord, Claim | None]] = (),
        undead: Sequence[Envelope] = (),
        unclaimed: Mapping[ClaimKey, str | None] | None = None,
    ) -> FinalizeReport:
        """One bulk write: mark sent, release, record dead (dropping their claims), delete re-driven dead records.

        ``unclaimed`` names the sent events that had no claim (browser events), with
        their message ids: each gets its whole record, written once, here.
        """
        from google.cloud.firestore_v1.transforms import Increment

        now = utcnow()
        unclaimed = unclaimed or {}
        ops: list[tuple] = []
        roles: list[tuple[str, ClaimKey]] = []
        for envelope, result in sent:
            key = envelope.claim_key()
            data = {"state": STATE_SENT, "request_id": result.request_id, "sent_at": now}
            if key in unclaimed:
                data = {**self._record(envelope, unclaimed[key], now), "attempts": 1, **data}
            ops.append(("set", self._claim_ref(key), data))
            roles.append(("sent", key))
        for envelope, claim in released:
            if claim.state == UNCLAIMED:
                continue  # nothing was written for it
            ops.append(("delete", self._claim_ref(envelope.claim_key()), self._ours(claim)))
            roles.append(("release", envelope.claim_key()))
        for record, claim in dead:
            key = record.envelope.claim_key()
            ops.append(("set", self._dead_ref(key), self._dead_document(record, now, Increment(1))))
            roles.append(("dead", key))
            if claim is not None and claim.state != UNCLAIMED:
                ops.append(("delete", self._claim_ref(key), self._ours(claim)))
                roles.append(("release", key))
        for envelope in undead:
            ops.append(("delete", self._dead_ref(envelope.claim_key()), None))
            roles.append(("undead", envelope.claim_key()))
        report = FinalizeReport()
        if not ops:
            return report
        try:
            results = self._bulk(ops)
        except Exception as exc:
            log.error("could not finalize claims", error=type(exc).__name__, detail=str(exc)[:300])
            results = [(-1, None)] * len(ops)
        # A failed release or dead-record deletion needs nothing more: the claim's lease runs
        # out (or it was no longer ours), and a stale dead record is re-driven as a duplicate.
        for (role, key), (code, _) in zip(roles, results, strict=True):
            if code != _OK and role == "sent":
                report.sent_unmarked.add(key)
                log.warning("could not mark an event sent", event_id=key[2], status=code)
            elif code != _OK and role == "dead":
                report.dead_unrecorded.add(key)
        return report

    def _ours(self, claim: Claim):
        if claim.update_time is None:
            return None
        return self.store.client.write_option(last_update_time=claim.update_time)

    def _dead_document(self, record: DeadRecord, now: dt.datetime, increment: Any) -> dict[str, Any]:
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
            "attempts": increment,
            TTL_FIELD: now + self.dead_ttl,
        }

    def record_malformed(self, message_id: str | None, error: MalformedMessage, data: Any) -> str:
        """Record a message that is not an envelope. Its bytes are not kept: they may hold raw PII."""
        now = utcnow()
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
            TTL_FIELD: now + self.dead_ttl,
        }
        self.counters.add("firestore.rpcs")
        self.counters.add("firestore.writes")
        self._dead_ref(key).set(document, timeout=FIRESTORE_TIMEOUT_SECONDS)
        return doc_id(*key)

    # --- dead records, for re-driving ---

    def dead_records(self, event_ids: Iterable[str] | None = None, include_redriven: bool = False) -> list[dict]:
        """Dead records (newest first), all or those of the given event ids; each with its ``id``."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        collection = self.store.collection(DEAD_EVENTS)
        if event_ids is None:
            snaps = list(collection.stream())
        else:
            snaps = []
            for event_id in dict.fromkeys(event_ids):
                snaps += collection.where(filter=FieldFilter("event_id", "==", event_id)).stream()
        now = utcnow()
        records = []
        for snap in snaps:
            data = snap.to_dict()
            if data.get(TTL_FIELD) is not None and data[TTL_FIELD] <= now:
                continue
            if data.get("state") != "dead" and not include_redriven:
                continue
            records.append({"id": snap.id, **data})
        return sorted(records, key=lambda r: r.get("dead_at") or now, reverse=True)

    def mark_redriven(self, record_id: str, how: str, detail: str | None = None) -> None:
        ref = self.store.collection(DEAD_EVENTS).document(record_id)
        ref.update({"state": "redriven", "redriven_at": utcnow(), "redriven_via": how, "redrive_detail": detail})


# --- sending ---------------------------------------------------------------


def deliver(
    envelopes: Sequence[Envelope], send: Callable[[list[Envelope]], ApiResult], max_events: int = 1000
) -> dict[ClaimKey, ApiResult]:
    """Send envelopes (unique keys) in as few requests as allowed; the final answer for each event.

    Requests never mix pixels or test codes. When TikTok refuses a request
    because of some of its events, the events it names in
    ``data.failed_events`` are retried alone and the others together; without
    that hint the request is bisected. Either way each bad event ends up
    refused on its own (its own code and message), and the others delivered.
    Refusals of the whole request (token, permission) are never split.
    """
    results: dict[ClaimKey, ApiResult] = {}

    def attempt(group: list[Envelope]) -> None:
        result = send(group)
        if result.verdict != "reject" or len(group) == 1 or result.request_level:
            for envelope in group:
                results[envelope.claim_key()] = result
            return
        suspects = [group[i] for i in result.failed_indexes if i < len(group)]
        if suspects and len(suspects) < len(group):
            suspect_keys = {s.claim_key() for s in suspects}
            attempt([e for e in group if e.claim_key() not in suspect_keys])
            for suspect in suspects:
                attempt([suspect])
        elif suspects:
            for envelope in group:
                attempt([envelope])
        else:
            middle = len(group) // 2
            attempt(group[:middle])
            attempt(group[middle:])

    for group in group_for_requests(envelopes, max_events):
        attempt(group)
    return results


class Processor:
    """Handles one batch of distinct events: token check, claim, send, finalize."""

    def __init__(
        self,
        claims: ClaimStore,
        client: TikTokClient,
        tokens: Mapping[str, str],
        max_events: int = 1000,
        counters: Counters = COUNTERS,
        claim_browser_events: bool = False,
    ) -> None:
        self.claims = claims
        self.client = client
        self.tokens = dict(tokens)
        self.max_events = max_events
        self.counters = counters
        self.claim_browser_events = claim_browser_events
        # Unclaimed events this instance sent lately: a retried request or a redelivery that comes back
        # here is answered from memory; one that reaches another instance is TikTok's to merge.
        self._recent: OrderedDict[ClaimKey, float] = OrderedDict()
        self._recent_lock = threading.Lock()

    def _sent_lately(self, key: ClaimKey) -> bool:
        oldest = time.monotonic() - RECENT_SECONDS
        with self._recent_lock:
            sent_at = self._recent.get(key)
            return sent_at is not None and sent_at >= oldest

    def _remember_sent(self, keys: Iterable[ClaimKey]) -> None:
        now = time.monotonic()
        with self._recent_lock:
            for key in keys:
                self._recent[key] = now
                self._recent.move_to_end(key)
            while len(self._recent) > RECENT_MAX:
                self._recent.popitem(last=False)

    def claims_first(self, envelope: Envelope) -> bool:
        """Whether ``envelope`` is claimed before it is sent (else only recorded once TikTok accepted it).

        Order events and re-drives always are: an order event is sent once or
        never (a cancellation's tombstone, a re-drive long after TikTok's 48 h
        window). A browser event's only duplicate is a redelivery of its own
        message, minutes later, which TikTok merges on its event_id.
        """
        return envelope.source not in UNCLAIMED_SOURCES or self.claim_browser_events

    def _send(self, group: list[Envelope]) -> ApiResult:
        try:
            body = envelopes_to_request(group)
        except ValueError as exc:  # pydantic's ValidationError included; its text may quote values
            self.counters.add("tiktok.unsendable")
            return ApiResult("reject", None, f"could not build the Events API request ({type(exc).__name__})",
                             local=True)  # fmt: skip
        started = time.monotonic()
        result = self.client.track(body, self.tokens[group[0].pixel_code])
        self.counters.add("tiktok.requests")
        self.counters.add("tiktok.events", len(group))
        self.counters.add(f"tiktok.{result.verdict}")
        # INFO, one line per TikTok request (not per event): the dashboard's latency and batch-size metrics read it.
        log.info(
            "tiktok answered",
            verdict=result.verdict,
            code=result.code,
            http_status=result.http_status,
            request_id=result.request_id,
            events=len(group),
            pixel_code=group[0].pixel_code,
            test=bool(group[0].test_event_code),
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        if result.ok and result.code != 0:
            log.warning("TikTok accepted part of a request", code=result.code, tiktok_message=result.message,
                        request_id=result.request_id, events=len(group))  # fmt: skip
        return result

    def process(self, items: Sequence[tuple[Envelope, str | None]]) -> list[Outcome]:
        """The outcome of each (envelope, message id), in order. Never raises for one event's trouble."""
        self.counters.add("batches")
        self.counters.add("batch.events", len(items))
        outcomes: dict[ClaimKey, Outcome] = {}
        first: dict[ClaimKey, tuple[Envelope, str | None]] = {}
        for envelope, message_id in items:
            first.setdefault(envelope.claim_key(), (envelope, message_id))

        dead: list[tuple[DeadRecord, Claim | None]] = []
        with_token = []
        for envelope, message_id in first.values():
            if envelope.pixel_code in self.tokens:
                with_token.append((envelope, message_id))
            else:
                reason = (
                    f"no access token for pixel {envelope.pixel_code}: add it to TIKTOK_ACCESS_TOKEN "
                    "(a JSON object keyed by pixel code for several pixels), then re-drive"
                )
                dead.append((DeadRecord(envelope, KIND_MISSING_TOKEN, reason, message_id=message_id), None))

        to_claim = [(e, m) for e, m in with_token if self.claims_first(e)]
        try:
            claims = self.claims.claim(to_claim) if to_claim else {}
        except Exception as exc:
            log.error("could not claim events", error=type(exc).__name__, detail=str(exc)[:300])
            claims = {}
            for envelope, _ in to_claim:
                outcomes[envelope.claim_key()] = Outcome(
                    RETRY, f"Firestore unavailable for claims ({type(exc).__name__})", envelope.event_id
                )
        for envelope, _ in with_token:
            if self.claims_first(envelope):
                continue
            key = envelope.claim_key()
            if self._sent_lately(key):
                outcomes[key] = Outcome(DUPLICATE, "sent by this instance moments ago", envelope.event_id)
            else:
                claims[key] = Claim(UNCLAIMED)

        to_send: list[Envelope] = []
        message_ids = {e.claim_key(): m for e, m in first.values()}
        undead: list[Envelope] = []
        for envelope, _ in with_token:
            key = envelope.claim_key()
            claim = claims.get(key)
            if claim is None:
                continue
            if claim.state in ("claimed", UNCLAIMED):
                to_send.append(envelope)
            elif claim.state == STATE_SENT:
                outcomes[key] = Outcome(DUPLICATE, "already sent", envelope.event_id, {"request_id": claim.request_id})
                if envelope.source == "redrive":
                    undead.append(envelope)
            elif claim.state == STATE_CANCELLED:
                outcomes[key] = Outcome(SKIPPED, "order cancelled before its Purchase was sent", envelope.event_id,
                                        {"rule": "cancelled"})  # fmt: skip
                if envelope.source == "redrive":
                    undead.append(envelope)
            else:
                outcomes[key] = Outcome(RETRY, f"event claimed by another attempt ({claim.detail})", envelope.event_id)

        try:
            results = deliver(to_send, self._send, self.max_events) if to_send else {}
        except Exception as exc:  # a bug or an unexpected client error: give the claims back, retry later
            log.error("sending failed unexpectedly", error=type(exc).__name__, detail=str(exc)[:300])
            failure = ApiResult("retry", None, f"sender error ({type(exc).__name__})")
            results = {e.claim_key(): failure for e in to_send}
        sent: list[tuple[Envelope, ApiResult]] = []
        released: list[tuple[Envelope, Claim]] = []
        for envelope in to_send:
            key = envelope.claim_key()
            result = results[key]
            if result.ok:
                sent.append((envelope, result))
                if envelope.source == "redrive":
                    undead.append(envelope)
            elif result.verdict == "retry":
                released.append((envelope, claims[key]))
            elif result.local:
                record = DeadRecord(envelope, KIND_UNSENDABLE, f"not sent: {result.message}",
                                    message_id=message_ids[key])  # fmt: skip
                dead.append((record, claims[key]))
            else:
                record = DeadRecord(envelope, KIND_REJECTED, f"TikTok refused the event: {result.describe()}",
                                    result.code, result.message, result.request_id, message_ids[key])  # fmt: skip
                dead.append((record, claims[key]))

        unclaimed = {e.claim_key(): message_ids[e.claim_key()] for e, _ in sent
                     if claims[e.claim_key()].state == UNCLAIMED}  # fmt: skip
        report = self.claims.finalize(sent, released, dead, undead, unclaimed)
        self._remember_sent(key for key in unclaimed if key not in report.sent_unmarked)

        for envelope, result in sent:
            key = envelope.claim_key()
            keys = match_keys.present(envelope.user)
            coverage = match_keys.score(keys)
            counts = delivered_counts(envelope.pixel_code, envelope.source, envelope.event, keys, coverage)
            self.counters.add_many(counts)
            details = {"request_id": result.request_id, "code": result.code, "attempts": claims[key].attempts,
                       "match_keys": list(keys), "match_score": coverage}  # fmt: skip
            if key in report.sent_unmarked and key in unclaimed:
                # Its record is the only trace that it went out: the redelivery sends it again (TikTok
                # merges the copy on its event_id) and records it.
                reason = "sent, but its record could not be written; the redelivery records it"
                outcomes[key] = Outcome(RETRY, reason, envelope.event_id, details)
                continue
            if key in report.sent_unmarked:
                details["claim_marked"] = False
            outcomes[key] = Outcome(SENT, f"{envelope.event} sent", envelope.event_id, details)
        for envelope, _ in released:
            result = results[envelope.claim_key()]
            outcomes[envelope.claim_key()] = Outcome(
                RETRY, f"TikTok transient error: {result.describe()}", envelope.event_id, {"code": result.code}
            )
        for record, _ in dead:
            key = record.envelope.claim_key()
            if key in report.dead_unrecorded:
                outcomes[key] = Outcome(RETRY, "could not record the dead event; will retry", record.envelope.event_id)
            else:
                details = {"dead_kind": record.kind, "code": record.code, "request_id": record.request_id}
                outcomes[key] = Outcome(DEAD, record.reason, record.envelope.event_id, details)

        answers = []
        answered: set[ClaimKey] = set()
        for envelope, _ in items:
            outcome = outcomes[envelope.claim_key()]
            if envelope.claim_key() in answered and not outcome.retry:
                outcome = Outcome(DUPLICATE, f"copy of an event in the same batch ({outcome.kind})", envelope.event_id)
            answered.add(envelope.claim_key())
            answers.append(Outcome(outcome.kind, outcome.reason, outcome.event_id,
                                   {**_event_details(envelope), **outcome.details}))  # fmt: skip
        return answers


# --- micro-batching ----------------------------------------------------------


def batch_due(
    *,
    opened: float,
    last_join: float,
    size: int,
    in_flight: bool,
    answered_at: float,
    expected: int,
    wait: float,
    idle: float,
    hold: float,
) -> float:
    """When an open batch goes (a ``time.monotonic()`` value; one in the past: now).

    Every push holds one of the instance's threads until it is answered, so
    under load the pushes that could join this batch are mostly those whose
    invocations a batch in flight still holds. While one is in flight, this
    batch keeps accepting (for up to ``hold``, at least ``wait``) instead of
    going with the few threads that happened to be free. Once one was answered
    (while this batch gathered, or at most ``wait`` before it opened), the next
    pushes of the ``expected`` invocations it found in the instance are
    coming: until it holds that many, the batch keeps accepting while they
    come within the idle gap, up to the same limit. Otherwise the rule is the
    plain one: ``wait`` at most (counted again from an answer), and a lone
    event (nobody joining) goes after the idle gap. ``idle`` 0 always waits
    the full ``wait``.
    """
    limit = opened + max(wait, hold)
    if in_flight:
        return limit
    if idle > 0 and size < expected and answered_at >= opened - wait:
        return min(limit, max(last_join, answered_at) + idle)
    due = min(limit, max(opened, answered_at) + wait)
    return min(due, last_join + idle) if idle > 0 else due


class _Item:
    __slots__ = ("envelope", "message_id", "done", "outcome")

    def __init__(self, envelope: Envelope, message_id: str | None) -> None:
        self.envelope = envelope
        self.message_id = message_id
        self.done = threading.Event()
        self.outcome: Outcome | None = None

    def resolve(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.done.set()


class _Batch:
    __slots__ = ("items", "closed", "opened", "last_join")

    def __init__(self, now: float) -> None:
        self.items: list[_Item] = []
        self.closed = False
        self.opened = now
        self.last_join = now


class Dispatcher:
    """Coalesces concurrent invocations of one instance into batches; each waits for its own outcome.

    No background thread: the first invocation of a batch waits for company
    (:func:`batch_due`, or until ``max_events`` joined), then processes the
    batch for everyone. Batching is off when ``max_events`` is 1 or ``wait_ms`` is 0.
    """

    def __init__(
        self,
        process: Callable[[Sequence[tuple[Envelope, str | None]]], list[Outcome]],
        max_events: int,
        wait_ms: int,
        result_timeout: float,
        counters: Counters = COUNTERS,
        idle_ms: int = 0,
        hold_ms: int = 0,
    ) -> None:
        self._process = process
        self.max_events = max_events
        self.wait_seconds = wait_ms / 1000
        self.idle_seconds = idle_ms / 1000
        self.hold_seconds = hold_ms / 1000
        self.batching = max_events > 1 and wait_ms > 0
        self.result_timeout = result_timeout
        self.counters = counters
        self._lock = threading.Lock()
        # Wakes a gathering leader when its batch fills or a batch in flight is answered.
        self._changed = threading.Condition(self._lock)
        self._open: _Batch | None = None
        self._inflight: dict[ClaimKey, _Item] = {}
        self._processing = 0  # batches between their close and their outcomes
        self._answered_at = float("-inf")  # when a batch's outcomes last freed its invocations
        self._expected = 0  # how many invocations the instance was serving then (open and in flight)

    def submit(self, envelope: Envelope, message_id: str | None = None) -> Outcome:
        key = envelope.claim_key()
        with self._lock:
            primary = self._inflight.get(key)
            if primary is None:
                item = _Item(envelope, message_id)
                self._inflight[key] = item
                batch, lead = self._enqueue(item)
        if primary is not None:
            self.counters.add("joined_in_flight")
            outcome = self._wait(primary)
            if outcome.retry:
                return outcome
            reason = f"copy of an event handled concurrently in this instance ({outcome.kind})"
            return Outcome(DUPLICATE, reason, envelope.event_id, _event_details(envelope))
        if lead:
            self._lead(batch)
        return self._wait(item)

    def _enqueue(self, item: _Item) -> tuple[_Batch, bool]:
        now = time.monotonic()
        if not self.batching:
            batch = _Batch(now)
            batch.items.append(item)
            return batch, True
        lead = False
        batch = self._open
        if batch is None:
            batch = self._open = _Batch(now)
            lead = True
        batch.items.append(item)
        batch.last_join = now
        if len(batch.items) >= self.max_events:
            self._close(batch)
        elif len(batch.items) == self._expected:
            self._changed.notify_all()  # the leader may go now (batch_due)
        return batch, lead

    def _close(self, batch: _Batch) -> None:
        batch.closed = True
        if self._open is batch:
            self._open = None
        self._changed.notify_all()

    def _lead(self, batch: _Batch) -> None:
        if self.batching:
            self._gather(batch)
        with self._lock:  # closed and counted in flight at once: the next batch's leader sees either both or neither
            self._close(batch)
            self._processing += 1
        items = batch.items
        try:
            outcomes = self._process([(i.envelope, i.message_id) for i in items])
            for item, outcome in zip(items, outcomes, strict=True):
                item.resolve(outcome)
        except Exception as exc:
            log.error("batch failed", error=type(exc).__name__, detail=str(exc)[:300], events=len(items))
            for item in items:
                item.resolve(Outcome(RETRY, f"sender error ({type(exc).__name__})", item.envelope.event_id))
        finally:
            with self._lock:
                self._processing -= 1
                self._answered_at = time.monotonic()
                self._expected = len(self._inflight)
                for item in items:
                    if self._inflight.get(item.envelope.claim_key()) is item:
                        del self._inflight[item.envelope.claim_key()]
                self._changed.notify_all()

    def _gather(self, batch: _Batch) -> None:
        """Wait for company until the batch is full or :func:`batch_due` says it goes."""
        with self._lock:
            while not batch.closed:
                due = batch_due(
                    opened=batch.opened,
                    last_join=batch.last_join,
                    size=len(batch.items),
                    in_flight=self._processing > 0,
                    answered_at=self._answered_at,
                    expected=self._expected,
                    wait=self.wait_seconds,
                    idle=self.idle_seconds,
                    hold=self.hold_seconds,
                )
                remaining = due - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def _wait(self, item: _Item) -> Outcome:
        if not item.done.wait(self.result_timeout):
            return Outcome(RETRY, "timed out waiting for the batch", item.envelope.event_id)
        assert item.outcome is not None
        return item.outcome


# --- the sender as a whole ---------------------------------------------------


class Sender:
    """What one sender instance holds: claims, the TikTok client and the dispatcher."""

    def __init__(
        self,
        claims: ClaimStore,
        client: TikTokClient,
        tokens: Mapping[str, str],
        max_events: int,
        wait_ms: int,
        result_timeout: float,
        counters: Counters = COUNTERS,
        idle_ms: int = 0,
        hold_ms: int = 0,
    ) -> None:
        self.claims = claims
        self.client = client
        self.counters = counters
        self.processor = Processor(claims, client, tokens, max_events, counters)
        self.dispatcher = Dispatcher(self.processor.process, max_events, wait_ms, result_timeout, counters, idle_ms,
                                     hold_ms)  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Any, firestore_client: Any = None, transport: Any = None) -> Sender:
        """Build from :class:`shared.config.SenderSettings`; clients are created here, once."""
        from shared.infra.store import Store, make_client

        client = firestore_client or make_client(settings.project, settings.firestore_database)
        claims = ClaimStore(
            Store(client, settings.collection_prefix),
            lease=dt.timedelta(seconds=settings.claim_lease_seconds),
            claim_ttl=dt.timedelta(hours=settings.claim_ttl_hours),
            dead_ttl=dt.timedelta(days=settings.dead_ttl_days),
        )
        tokens = {pixel: secret.get_secret_value() for pixel, secret in settings.access_tokens().items()}
        api = TikTokClient(settings.api_url, settings.timeout_seconds, transport=transport)
        # Longer than any batch can take; a waiter that gives up only causes a harmless redelivery.
        result_timeout = settings.claim_lease_seconds + 4 * settings.timeout_seconds + 30
        result_timeout += (settings.batch_wait_ms + settings.batch_hold_ms) / 1000  # and the gathering before it
        sender = cls(claims, api, tokens, settings.batch_max_events, settings.batch_wait_ms, result_timeout,
                     idle_ms=settings.batch_idle_ms, hold_ms=settings.batch_hold_ms)  # fmt: skip
        sender.processor.claim_browser_events = settings.claim_browser_events
        return sender

    def handle_message(self, message: Any, message_id: str | None) -> Outcome:
        """One Pub/Sub message to its outcome; never raises."""
        self.counters.add("messages")
        try:
            envelope = decode_message(message)
        except MalformedMessage as exc:
            data = message.get("data") if isinstance(message, Mapping) else None
            try:
                record_id = self.claims.record_malformed(message_id, exc, data)
            except Exception as error:  # Firestore trouble: Pub/Sub brings the message back
                log.error("could not record a malformed message", error=type(error).__name__)
                outcome = Outcome(RETRY, f"could not record a malformed message ({type(error).__name__})")
            else:
                outcome = Outcome(DEAD_MALFORMED, exc.reason, exc.ids.get("event_id"), {"dead_record": record_id})
        else:
            outcome = self.dispatcher.submit(envelope, message_id)
        self.counters.add(f"outcome.{outcome.kind}")
        return outcome

    def redrive_direct(self, records: Sequence[Mapping[str, Any]]) -> list[tuple[str, Outcome]]:
        """Send dead records' envelopes now, in one batch; the dead record goes once delivered."""
        items = []
        for record in records:
            envelope = Envelope.model_validate_json(record["envelope"]).model_copy(update={"source": "redrive"})
            items.append((envelope, record.get("message_id")))
        if not items:
            return []
        outcomes = self.processor.process(items)
        return [(record["id"], outcome) for record, outcome in zip(records, outcomes, strict=True)]


def redrive_via_pubsub(
    claims: ClaimStore, records: Sequence[Mapping[str, Any]], publisher: Any
) -> list[tuple[str, str]]:
    """Republish dead records' envelopes (source ``redrive``) and mark them; (record id, message id) each."""
    done = []
    for record in records:
        envelope = Envelope.model_validate_json(record["envelope"]).model_copy(update={"source": "redrive"})
        (message_id,) = publisher.publish([envelope])
        claims.mark_redriven(record["id"], "pubsub", message_id)
        done.append((record["id"], message_id))
    return done

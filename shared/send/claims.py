"""The sender's claims (``event_claims``): one document per event, so that each is sent once.

Separate because it is the only Firestore logic of the sender: which state a
claim is in, when one may be taken over, what finalizing a batch writes. The
writes themselves go through :class:`ClaimDocuments` (the real one is
:class:`shared.infra.store.Store`: bulk writes, batched reads, the TTL rule); the
dead records they end are :mod:`shared.send.dead`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shared import budgets
from shared.destinations import Answer, ClaimKey, Destination
from shared.domain import match_keys
from shared.domain.models import Envelope
from shared.infra import log
from shared.infra.metrics import COUNTERS, Counters
from shared.infra.store import (
    ALREADY_EXISTS,
    DAY_FIELD,
    DEAD_EVENTS,
    EVENT_CLAIMS,
    OK,
    ORDER_EVENTS,
    OUTCOME_RECORD,
    TTL_FIELD,
    BulkOp,
    Create,
    Delete,
    Found,
    Merge,
    Update,
    day_of,
    is_expired,
    utcnow,
)
from shared.outcome import Kind
from shared.send.dead import DeadRecord, dead_document, malformed_record
from shared.send.decode import MalformedMessage

# Claim states.
SENDING = "sending"
STATE_SENT = "sent"
STATE_CANCELLED = "cancelled"  # a cancellation's tombstone: the Purchase is never sent
UNCLAIMED = "unclaimed"  # a Claim's state for an event sent without one (recorded once TikTok accepted it)

FIRESTORE_TIMEOUT_SECONDS = budgets.SENDER_FIRESTORE_SECONDS
# google.rpc.Code of a write that lost to contention (ABORTED) or to Firestore's own rate limits
# (RESOURCE_EXHAUSTED: a hot document or a ramp past 500/50/5), counted by name.
CONTENTION_CODES = {10: "aborted", 8: "resource_exhausted"}


@runtime_checkable
class ClaimDocuments(Protocol):
    """The store as the sender's claims use it, and no more: bulk writes, batched reads, dead records' listing.

    :class:`shared.infra.store.Store` is the real one (Firestore); ``tests/unit/memory.py``
    is the in-memory stand-in the unit tests use, held to the same status codes,
    preconditions and expiry rule by ``tests/emulator/test_memory_store_contract.py``.
    """

    def bulk(
        self, ops: Sequence[BulkOp], *, counters: Counters = ..., timeout: float | None = ...
    ) -> list[tuple[int, Any]]: ...

    def get_many(
        self,
        collection: str,
        keys: Sequence[Sequence[object]],
        *,
        counters: Counters = ...,
        timeout: float | None = ...,
    ) -> list[Found]: ...

    def put(
        self,
        collection: str,
        key: Sequence[object],
        data: dict[str, Any],
        *,
        counters: Counters = ...,
        timeout: float | None = ...,
    ) -> str: ...

    def live_documents(
        self, collection: str, where: tuple[str, Any] | None = None
    ) -> list[tuple[str, dict[str, Any]]]: ...

    def update_by_id(self, collection: str, document: str, fields: dict[str, Any]) -> None: ...

    def increment(self, amount: int = 1) -> Any: ...


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
class FinalizeReport:
    """Which finalizing writes failed (keys), so the caller can pick outcomes."""

    sent_unmarked: set[ClaimKey] = field(default_factory=set)
    dead_unrecorded: set[ClaimKey] = field(default_factory=set)


class ClaimStore:
    """Claims and dead records in Firestore, written in bulk, every operation counted.

    A claim (key: its destination's, :meth:`shared.destinations.Destination.stored_key`;
    pixel + event + event_id for TikTok, as it dedups) is ``sending``
    while an attempt holds it (until ``lease_until``) and ``sent`` once TikTok
    accepted the event (with its ``request_id`` and ``sent_at``); it also names
    the event's ``source`` and ``match_keys`` (names only) for the report. The
    happy path costs two document writes per event (create, mark sent) and two
    RPCs per batch. A transient failure deletes the claim (a redelivery claims
    again), a claim whose holder died is taken over once its lease is over, a
    permanent failure deletes it and writes a dead record.
    """

    def __init__(
        self,
        store: ClaimDocuments,
        lease: dt.timedelta,
        claim_ttl: dt.timedelta,
        dead_ttl: dt.timedelta,
        counters: Counters = COUNTERS,
        key: Callable[[Envelope], ClaimKey] = Envelope.claim_key,
    ) -> None:
        self.store = store
        self.lease = lease
        self.claim_ttl = claim_ttl
        self.dead_ttl = dead_ttl
        self.counters = counters
        # The key of an event's claim and dead record; the default is the legacy key, which TikTok's is.
        self.key = key

    def for_destination(self, destination: Destination[Any, Any]) -> ClaimStore:
        """The same claims, keyed as ``destination`` keys them (see the compatibility rule in shared.destinations)."""
        return ClaimStore(self.store, self.lease, self.claim_ttl, self.dead_ttl, self.counters, destination.stored_key)

    def _bulk(self, ops: list[BulkOp]) -> list[tuple[int, Any]]:
        """Independent writes, each succeeding or failing alone; (code, update_time) each."""
        results = self.store.bulk(ops, counters=self.counters, timeout=FIRESTORE_TIMEOUT_SECONDS)
        for code, _ in results:
            if code in CONTENTION_CODES:  # contention or Firestore's own throttling (GET /metrics shows them)
                self.counters.add(f"firestore.{CONTENTION_CODES[code]}")
        return results

    def claim(self, envelopes: Sequence[tuple[Envelope, str | None]]) -> dict[ClaimKey, Claim]:
        """Claim every event (unique keys) for this attempt; the state of each."""
        now = utcnow()
        keys = [self.key(e) for e, _ in envelopes]

        def fresh(envelope: Envelope, message_id: str | None, attempts: int) -> dict[str, Any]:
            return {**self._record(envelope, message_id, now), "state": SENDING, "attempts": attempts,
                    "lease_until": now + self.lease}  # fmt: skip

        ops: list[BulkOp] = [Create(EVENT_CLAIMS, k, fresh(e, m, 1)) for k, (e, m) in zip(keys, envelopes, strict=True)]
        claims: dict[ClaimKey, Claim] = {}
        taken: list[tuple[ClaimKey, Envelope, str | None]] = []
        for key, (envelope, message_id), (code, update_time) in zip(keys, envelopes, self._bulk(ops), strict=True):
            if code == OK:
                claims[key] = Claim("claimed", update_time)
            elif code == ALREADY_EXISTS:
                taken.append((key, envelope, message_id))
            else:
                claims[key] = Claim("busy", detail=f"Firestore status {code} on create")
        if not taken:
            return claims
        found = self.store.get_many(EVENT_CLAIMS, [k for k, _, _ in taken], counters=self.counters,
                                    timeout=FIRESTORE_TIMEOUT_SECONDS)  # fmt: skip
        takeovers: list[tuple[ClaimKey, str, int, BulkOp]] = []
        for (key, envelope, message_id), existing in zip(taken, found, strict=True):
            data = existing.data
            if data is None:  # released in between: claim it afresh
                takeovers.append((key, envelope.event_id, 1, Create(EVENT_CLAIMS, key, fresh(envelope, message_id, 1))))
                continue
            expired = is_expired(data, now)
            if not expired and data.get("state") == STATE_SENT:
                claims[key] = Claim(STATE_SENT, request_id=data.get("request_id"), attempts=data.get("attempts", 1))
            elif not expired and data.get("state") == STATE_CANCELLED:
                claims[key] = Claim(STATE_CANCELLED)
            elif not expired and data.get("lease_until") and data["lease_until"] > now:
                claims[key] = Claim("busy", until=data["lease_until"], detail=f"lease until {data['lease_until']}")
            else:  # its holder died (lease over) or TTL has not removed it yet
                attempts = int(data.get("attempts", 1)) + 1
                update = Update(EVENT_CLAIMS, key, fresh(envelope, message_id, attempts), existing.update_time)
                takeovers.append((key, envelope.event_id, attempts, update))
        if takeovers:
            for (key, event_id, attempts, _), (code, update_time) in zip(
                takeovers, self._bulk([t[3] for t in takeovers]), strict=True
            ):
                lost = Claim("busy", detail="another attempt took it over first")
                claims[key] = Claim("claimed", update_time, attempts) if code == OK else lost
                if code == OK and attempts > 1:
                    # The attempt that held it died or outlived its lease: this one resends.
                    self.counters.add("claims.taken_over")
                    log.info("claim taken over after its lease", event_id=event_id, attempts=attempts)
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
            DAY_FIELD: day_of(now),
            TTL_FIELD: now + self.claim_ttl,
        }

    def finalize(
        self,
        sent: Sequence[tuple[Envelope, Answer]] = (),
        released: Sequence[tuple[Envelope, Claim]] = (),
        dead: Sequence[tuple[DeadRecord, Claim | None]] = (),
        undead: Sequence[Envelope] = (),
        unclaimed: Mapping[ClaimKey, str | None] | None = None,
        skipped: Sequence[tuple[Envelope, str]] = (),
    ) -> FinalizeReport:
        """One bulk write: mark sent, release, record dead (dropping their claims), delete re-driven dead records.

        ``unclaimed`` names the sent events that had no claim (browser events), with
        their message ids: each gets its whole record, written once, here. ``skipped``
        names the order events never to send (with the rule why): each gets the outcome
        record the webhooks write (``order_events``, ``("outcome", event_id)``, first
        answer wins), so the report counts it skipped; it has no claim.
        """
        now = utcnow()
        unclaimed = unclaimed or {}
        ops: list[BulkOp] = []
        roles: list[tuple[str, ClaimKey, str]] = []
        for envelope, result in sent:
            key = self.key(envelope)
            data: dict[str, Any] = {"state": STATE_SENT, "request_id": result.request_id, "sent_at": now}
            if key in unclaimed:
                data = {**self._record(envelope, unclaimed[key], now), "attempts": 1, **data}
            ops.append(Merge(EVENT_CLAIMS, key, data))
            roles.append(("sent", key, envelope.event_id))
        for envelope, claim in released:
            if claim.state == UNCLAIMED:
                continue  # nothing was written for it
            # Only if it is still ours: never delete the claim of an attempt that took it over.
            ops.append(Delete(EVENT_CLAIMS, self.key(envelope), claim.update_time))
            roles.append(("release", self.key(envelope), envelope.event_id))
        for dead_record, held in dead:
            key = self.key(dead_record.envelope)
            event_id = dead_record.envelope.event_id
            ops.append(Merge(DEAD_EVENTS, key, dead_document(dead_record, now, self.dead_ttl, self.store.increment(1))))
            roles.append(("dead", key, event_id))
            if held is not None and held.state != UNCLAIMED:
                ops.append(Delete(EVENT_CLAIMS, key, held.update_time))
                roles.append(("release", key, event_id))
        for envelope in undead:
            ops.append(Delete(DEAD_EVENTS, self.key(envelope)))
            roles.append(("undead", self.key(envelope), envelope.event_id))
        for envelope, rule in skipped:
            record = {"event_id": envelope.event_id, "outcome": Kind.SKIPPED.value, "rule": rule,
                      "source": envelope.source, "created_at": now, DAY_FIELD: day_of(now),
                      TTL_FIELD: now + budgets.ORDER_RECORD_TTL}  # fmt: skip
            ops.append(Create(ORDER_EVENTS, (OUTCOME_RECORD, envelope.event_id), record))
            roles.append(("skipped", self.key(envelope), envelope.event_id))
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
        # A skipped event's record that exists already (the webhook wrote it) or failed only costs the report.
        for (role, key, event_id), (code, _) in zip(roles, results, strict=True):
            if code != OK and role == "sent":
                report.sent_unmarked.add(key)
                log.warning("could not mark an event sent", event_id=event_id, status=code)
            elif code != OK and role == "dead":
                report.dead_unrecorded.add(key)
        return report

    def record_malformed(self, message_id: str | None, error: MalformedMessage, data: Any) -> str:
        """Record a message that is not an envelope. Its bytes are not kept: they may hold raw PII."""
        key, document = malformed_record(message_id, error, data, utcnow(), self.dead_ttl)
        return self.store.put(DEAD_EVENTS, key, document, counters=self.counters, timeout=FIRESTORE_TIMEOUT_SECONDS)

    # --- dead records, for re-driving ---

    def dead_records(
        self, event_ids: Iterable[str] | None = None, include_redriven: bool = False
    ) -> list[dict[str, Any]]:
        """Dead records (newest first), all or those of the given event ids; each with its ``id``."""
        if event_ids is None:
            documents = self.store.live_documents(DEAD_EVENTS)
        else:
            documents = []
            for event_id in dict.fromkeys(event_ids):
                documents += self.store.live_documents(DEAD_EVENTS, ("event_id", event_id))
        records = [{"id": id_, **data} for id_, data in documents if data.get("state") == "dead" or include_redriven]
        now = utcnow()
        return sorted(records, key=lambda r: r.get("dead_at") or now, reverse=True)

    def mark_redriven(self, record_id: str, how: str, detail: str | None = None) -> None:
        fields = {"state": "redriven", "redriven_at": utcnow(), "redriven_via": how, "redrive_detail": detail}
        self.store.update_by_id(DEAD_EVENTS, record_id, fields)

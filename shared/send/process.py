"""One batch of distinct events, start to finish: token check, claim, send (bisecting refusals), finalize.

Separate from the batching (which decides which invocations share a batch)
and from Firestore (:mod:`shared.send.claims`): this is where each event's
outcome is decided, from its claim and its destination's answer, and the one
place the sender talks to a destination (:class:`shared.destinations.Destination`:
TikTok today), which it never names.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Generic

from shared import budgets
from shared.destinations import Answer, ClaimKey, ClientT, Destination, RequestT, in_requests
from shared.domain import match_keys
from shared.domain.events import ATTRIBUTION_WINDOW, OUTSIDE_WINDOW, is_order_event_id, order_window_refusal
from shared.domain.models import Envelope
from shared.infra import log
from shared.infra.metrics import COUNTERS, Counters, delivered_counts
from shared.outcome import Kind, Outcome
from shared.send.claims import STATE_CANCELLED, STATE_SENT, UNCLAIMED, Claim, ClaimStore, FinalizeReport
from shared.send.dead import KIND_MISSING_TOKEN, KIND_REJECTED, KIND_UNSENDABLE, DeadRecord
from shared.send.throttle import ThrottleGate
from shared.sources import registry

# Sources whose events are sent without a claim unless SENDER_CLAIM_BROWSER_EVENTS (see Processor.claims_first).
UNCLAIMED_SOURCES = frozenset(s.name for s in registry.SOURCES if not s.order_events)  # the browser's
ORDER_SOURCES = frozenset(registry.ORDER_SOURCES)  # and re-driven or manual events with an order's event_id
RECENT_SECONDS = budgets.RECENT_SENT_SECONDS  # how long an instance remembers the unclaimed events it sent
RECENT_MAX = 50_000  # about 150 bytes each


def event_details(envelope: Envelope) -> dict[str, Any]:
    """The fields every outcome line of an event carries."""
    return {"pixel_code": envelope.pixel_code, "event": envelope.event, "source": envelope.source}


def deliver(
    envelopes: Sequence[Envelope],
    send: Callable[[list[Envelope]], Answer],
    max_events: int = 1000,
    key: Callable[[Envelope], ClaimKey] = Envelope.claim_key,
    batch_key: Callable[[Envelope], Hashable] = Envelope.batch_key,
) -> dict[ClaimKey, Answer]:
    """Send envelopes (unique keys) in as few requests as allowed; the final answer for each event (by ``key``).

    Requests never mix batch keys (for TikTok: pixels or test codes). When the
    destination refuses a request because of some of its events, the events it
    names (``failed_indexes``) are retried alone and the others together; without
    that hint the request is bisected. Either way each bad event ends up
    refused on its own (its own code and message), and the others delivered.
    Refusals of the whole request (token, permission) are never split.
    """
    results: dict[ClaimKey, Answer] = {}

    def attempt(group: list[Envelope]) -> None:
        result = send(group)
        if result.verdict != "reject" or len(group) == 1 or result.request_level:
            for envelope in group:
                results[key(envelope)] = result
            return
        suspects = [group[i] for i in result.failed_indexes if i < len(group)]
        if suspects and len(suspects) < len(group):
            suspect_keys = {key(s) for s in suspects}
            attempt([e for e in group if key(e) not in suspect_keys])
            for suspect in suspects:
                attempt([suspect])
        elif suspects:
            for envelope in group:
                attempt([envelope])
        else:
            middle = len(group) // 2
            attempt(group[:middle])
            attempt(group[middle:])

    for group in in_requests(envelopes, batch_key, max_events):
        attempt(group)
    return results


class Processor(Generic[ClientT, RequestT]):
    """Handles one batch of distinct events for one destination: credential check, claim, send, finalize."""

    def __init__(
        self,
        claims: ClaimStore,
        destination: Destination[ClientT, RequestT],
        client: ClientT,
        tokens: Mapping[str, str],
        max_events: int = 1000,
        counters: Counters = COUNTERS,
        claim_browser_events: bool = False,
        max_order_age: dt.timedelta = ATTRIBUTION_WINDOW,
        now: Callable[[], float] = time.time,
        gate: ThrottleGate | None = None,
    ) -> None:
        self.destination = destination
        # Closed while the destination throttles: no request goes. The Sender gives its processor the
        # instance's gate; a processor on its own (tests, tools) has none and asks every time.
        self.gate = gate
        self.key = destination.stored_key  # the claim key: one event at this destination
        self.claims = claims.for_destination(destination)
        self.client = client
        self.tokens = dict(tokens)  # the destination's credentials, by its credential key (TikTok: per pixel)
        self.max_events = min(max_events, destination.max_batch_events)
        self.counters = counters
        self.claim_browser_events = claim_browser_events
        self.max_order_age = max_order_age  # ORDER_MAX_EVENT_AGE_DAYS, as the webhooks read it
        self.now = now
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

    def outside_window(self, envelope: Envelope, now: int) -> str | None:
        """Why an order event is never sent now (its event_time outside the order window), else None.

        The sender is the one way to TikTok (both webhooks, Shopify over Pub/Sub, replays, re-drives),
        so this is where an order is kept to once in its life: a copy that comes after the claim on
        its event_id expired is outside the window by then (``shared.budgets.order_claim_ttl``).
        Browser events have their own window at collect.
        """
        if envelope.source not in ORDER_SOURCES and not is_order_event_id(envelope.event_id):
            return None
        return order_window_refusal(envelope.event_time, now, self.max_order_age)

    def throttled_outcome(self, envelope: Envelope) -> Outcome:
        """The answer to an event held back because the destination is throttling (nothing written, nothing sent)."""
        remaining = self.gate.remaining() if self.gate is not None else 0.0
        reason = f"{self.destination.title} is throttling: held back for another {remaining:.1f} s, no request sent"
        return Outcome(Kind.RETRY, reason, envelope.event_id, {"throttled": True})

    def _send(self, group: list[Envelope]) -> Answer:
        name = self.destination.name
        if self.gate is not None and self.gate.closed:  # a request of this batch or another was throttled
            self.counters.add(f"{name}.held_throttled", len(group))
            return Answer("retry", None, f"not sent: {self.destination.title} is throttling", throttled=True)
        try:
            body = self.destination.request(group)
        except ValueError as exc:  # pydantic's ValidationError included; its text may quote values
            self.counters.add(f"{name}.unsendable")
            reason = f"could not build the {self.destination.request_name} ({type(exc).__name__})"
            return Answer("reject", None, reason, local=True)
        started = time.monotonic()
        result = self.destination.send(self.client, body, self.tokens[self.destination.credential_key(group[0])])
        self.counters.add(f"{name}.requests")
        self.counters.add(f"{name}.events", len(group))
        self.counters.add(f"{name}.{result.verdict}")
        if result.throttled:
            self.counters.add(f"{name}.throttled")
            if self.gate is not None:
                self.gate.throttled()
        elif result.verdict != "retry" and self.gate is not None:
            self.gate.accepted()
        # INFO, one line per request (not per event): the dashboard's latency and batch-size metrics read
        # TikTok's ("tiktok answered").
        log.info(
            f"{name} answered",
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
            log.warning(f"{self.destination.title} accepted part of a request", code=result.code,
                        tiktok_message=result.message, request_id=result.request_id, events=len(group))  # fmt: skip
        return result

    def process(self, items: Sequence[tuple[Envelope, str | None]]) -> list[Outcome]:
        """The outcome of each (envelope, message id), in order. Never raises for one event's trouble."""
        if self.gate is not None and self.gate.closed:  # before any claim: no Firestore write, no request
            self.counters.add("held_throttled", len(items))
            return [self.throttled_outcome(envelope) for envelope, _ in items]
        self.counters.add("batches")
        self.counters.add("batch.events", len(items))
        outcomes: dict[ClaimKey, Outcome] = {}
        first: dict[ClaimKey, tuple[Envelope, str | None]] = {}
        for envelope, message_id in items:
            first.setdefault(self.key(envelope), (envelope, message_id))

        dead: list[tuple[DeadRecord, Claim | None]] = []
        with_token = []
        skipped: list[tuple[Envelope, str]] = []
        undead: list[Envelope] = []
        now = int(self.now())
        for envelope, message_id in first.values():
            refusal = self.outside_window(envelope, now)
            if refusal is not None:  # before its claim: nothing written but its outcome record
                outcomes[self.key(envelope)] = Outcome(Kind.SKIPPED, refusal, envelope.event_id,
                                                         {"rule": OUTSIDE_WINDOW})  # fmt: skip
                skipped.append((envelope, OUTSIDE_WINDOW))
                self.counters.add(f"skipped.{OUTSIDE_WINDOW}")
                if envelope.source == "redrive":
                    undead.append(envelope)
            elif self.destination.credential_key(envelope) in self.tokens:
                with_token.append((envelope, message_id))
            else:
                reason = self.destination.missing_credential(envelope)
                dead.append((DeadRecord(envelope, KIND_MISSING_TOKEN, reason, message_id=message_id), None))

        claims = self._claim(with_token, outcomes)
        to_send: list[Envelope] = []
        message_ids = {self.key(e): m for e, m in first.values()}
        for envelope, _ in with_token:
            key = self.key(envelope)
            claim = claims.get(key)
            if claim is None:
                continue
            if claim.state in ("claimed", UNCLAIMED):
                to_send.append(envelope)
            elif claim.state == STATE_SENT:
                outcomes[key] = Outcome(Kind.DUPLICATE, "already sent", envelope.event_id,
                                        {"request_id": claim.request_id})  # fmt: skip
                if envelope.source == "redrive":
                    undead.append(envelope)
            elif claim.state == STATE_CANCELLED:
                outcomes[key] = Outcome(Kind.SKIPPED, "order cancelled before its Purchase was sent", envelope.event_id,
                                        {"rule": "cancelled"})  # fmt: skip
                if envelope.source == "redrive":
                    undead.append(envelope)
            else:
                outcomes[key] = Outcome(Kind.RETRY, f"event claimed by another attempt ({claim.detail})",
                                        envelope.event_id)  # fmt: skip

        try:
            results = self._deliver(to_send) if to_send else {}
        except Exception as exc:  # a bug or an unexpected client error: give the claims back, retry later
            log.error("sending failed unexpectedly", error=type(exc).__name__, detail=str(exc)[:300])
            failure = Answer("retry", None, f"sender error ({type(exc).__name__})")
            results = {self.key(e): failure for e in to_send}
        sent: list[tuple[Envelope, Answer]] = []
        released: list[tuple[Envelope, Claim]] = []
        for envelope in to_send:
            key = self.key(envelope)
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
                reason = f"{self.destination.title} refused the event: {result.describe()}"
                record = DeadRecord(envelope, KIND_REJECTED, reason,
                                    result.code, result.message, result.request_id, message_ids[key])  # fmt: skip
                dead.append((record, claims[key]))

        unclaimed = {self.key(e): message_ids[self.key(e)] for e, _ in sent
                     if claims[self.key(e)].state == UNCLAIMED}  # fmt: skip
        report = self.claims.finalize(sent, released, dead, undead, unclaimed, skipped)
        self._remember_sent(key for key in unclaimed if key not in report.sent_unmarked)
        self._finalized(outcomes, report, claims, results, sent, released, dead, unclaimed)
        return _answers(items, outcomes, self.key)

    def _deliver(self, envelopes: Sequence[Envelope]) -> dict[ClaimKey, Answer]:
        return deliver(envelopes, self._send, self.max_events, self.key, self.destination.batch_key)

    def _claim(
        self, with_token: list[tuple[Envelope, str | None]], outcomes: dict[ClaimKey, Outcome]
    ) -> dict[ClaimKey, Claim]:
        """Each event's claim (unclaimed browser events too); an outcome already for those that have none."""
        to_claim = [(e, m) for e, m in with_token if self.claims_first(e)]
        try:
            claims = self.claims.claim(to_claim) if to_claim else {}
        except Exception as exc:
            log.error("could not claim events", error=type(exc).__name__, detail=str(exc)[:300])
            claims = {}
            for envelope, _ in to_claim:
                outcomes[self.key(envelope)] = Outcome(
                    Kind.RETRY, f"Firestore unavailable for claims ({type(exc).__name__})", envelope.event_id
                )
        for envelope, _ in with_token:
            if self.claims_first(envelope):
                continue
            key = self.key(envelope)
            if self._sent_lately(key):
                outcomes[key] = Outcome(Kind.DUPLICATE, "sent by this instance moments ago", envelope.event_id)
            else:
                claims[key] = Claim(UNCLAIMED)
        return claims

    def _finalized(
        self,
        outcomes: dict[ClaimKey, Outcome],
        report: FinalizeReport,
        claims: Mapping[ClaimKey, Claim],
        results: Mapping[ClaimKey, Answer],
        sent: Sequence[tuple[Envelope, Answer]],
        released: Sequence[tuple[Envelope, Claim]],
        dead: Sequence[tuple[DeadRecord, Claim | None]],
        unclaimed: Mapping[ClaimKey, str | None],
    ) -> None:
        """The outcomes of the events the final bulk write was about (and the counters of those delivered)."""
        for envelope, result in sent:
            key = self.key(envelope)
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
                outcomes[key] = Outcome(Kind.RETRY, reason, envelope.event_id, details)
                continue
            if key in report.sent_unmarked:
                details["claim_marked"] = False
            outcomes[key] = Outcome(Kind.SENT, f"{envelope.event} sent", envelope.event_id, details)
        for envelope, _ in released:
            result = results[self.key(envelope)]
            outcomes[self.key(envelope)] = Outcome(
                Kind.RETRY,
                f"{self.destination.title} transient error: {result.describe()}",
                envelope.event_id,
                {"code": result.code, **({"throttled": True} if result.throttled else {})},
            )
        for record, _ in dead:
            key = self.key(record.envelope)
            if key in report.dead_unrecorded:
                outcomes[key] = Outcome(Kind.RETRY, "could not record the dead event; will retry",
                                        record.envelope.event_id)  # fmt: skip
            else:
                details = {"dead_kind": record.kind, "code": record.code, "request_id": record.request_id}
                outcomes[key] = Outcome(Kind.DEAD, record.reason, record.envelope.event_id, details)


def _answers(
    items: Sequence[tuple[Envelope, str | None]],
    outcomes: Mapping[ClaimKey, Outcome],
    key: Callable[[Envelope], ClaimKey],
) -> list[Outcome]:
    """One outcome per item, in order: a second copy of an event in the batch is its duplicate."""
    answers = []
    answered: set[ClaimKey] = set()
    for envelope, _ in items:
        outcome = outcomes[key(envelope)]
        if key(envelope) in answered and not outcome.retry:
            outcome = Outcome(Kind.DUPLICATE, f"copy of an event in the same batch ({outcome.kind})",
                              envelope.event_id)  # fmt: skip
        answered.add(key(envelope))
        answers.append(Outcome(outcome.kind, outcome.reason, outcome.event_id,
                               {**event_details(envelope), **outcome.details}))  # fmt: skip
    return answers

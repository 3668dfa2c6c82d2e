"""The sender as a whole: what one instance holds, one push to its reply, and re-driving dead events.

Separate because it is the wiring: :class:`Sender` puts the claims, the
destination (:data:`shared.destinations.registry.SENDER`: TikTok) and its
client, the processor and the dispatcher together from the settings;
:func:`handle_push` turns one message's outcome into the function's answer
(2xx acknowledges, 503 asks Pub/Sub to redeliver).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shared import budgets
from shared.destinations import Connection, Destination
from shared.destinations.registry import SENDER
from shared.domain.models import Envelope
from shared.infra import log
from shared.infra.http import Reply
from shared.infra.metrics import COUNTERS, Counters
from shared.infra.pubsub import PushRefused
from shared.infra.store import Store, make_client
from shared.outcome import Kind, Outcome
from shared.send.batching import Dispatcher
from shared.send.claims import ClaimStore
from shared.send.decode import MalformedMessage, decode_message
from shared.send.process import Processor
from shared.send.throttle import ThrottleGate

if TYPE_CHECKING:
    import httpx
    from google.cloud import firestore

    from shared.config import SenderSettings
    from shared.infra.pubsub import Publisher


class Sender:
    """What one sender instance holds: claims, the destination's client, the processor and the dispatcher."""

    def __init__(
        self,
        claims: ClaimStore,
        destination: Destination[Any, Any],
        client: Connection,
        tokens: Mapping[str, str],
        max_events: int,
        wait_ms: int,
        result_timeout: float,
        counters: Counters = COUNTERS,
        idle_ms: int = 0,
        hold_ms: int = 0,
        gate: ThrottleGate | None = None,
        throttle_hold: float = budgets.SENDER_THROTTLE_HOLD_SECONDS,
        requeue: Callable[[Envelope], str] | None = None,
    ) -> None:
        self.claims = claims
        self.client = client
        self.counters = counters
        self.gate = gate or ThrottleGate()
        self.throttle_hold = throttle_hold  # how long a push waits at a closed gate before it is re-published
        self.requeue = requeue  # publishes an envelope as a fresh message (None: a held push is answered 503)
        self.processor = Processor(claims, destination, client, tokens, max_events, counters, gate=self.gate)
        self.dispatcher = Dispatcher(self.processor.process, max_events, wait_ms, result_timeout, counters, idle_ms,
                                     hold_ms, key=self.processor.key)  # fmt: skip

    @classmethod
    def from_settings(
        cls,
        settings: SenderSettings,
        firestore_client: firestore.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        destination: Destination[Any, Any] = SENDER,
        requeue_topic: str | None = None,
    ) -> Sender:
        """Build from :class:`shared.config.SenderSettings`; clients are created here, once.

        ``requeue_topic``: the events topic, where a push held past the throttle hold is re-published.
        """
        client = firestore_client or make_client(settings.project, settings.firestore_database)
        claims = ClaimStore(
            Store(client, settings.collection_prefix),
            lease=dt.timedelta(seconds=settings.claim_lease_seconds),
            claim_ttl=dt.timedelta(hours=settings.claim_ttl_hours),
            dead_ttl=dt.timedelta(days=settings.dead_ttl_days),
        )
        tokens = destination.credentials(settings)
        api = destination.connect(settings, transport)
        # Longer than any batch can take; a waiter that gives up only causes a harmless redelivery.
        result_timeout = budgets.sender_result_wait(settings.timeout_seconds, settings.batch_hold_ms)
        result_timeout += (settings.batch_wait_ms + settings.batch_hold_ms) / 1000  # and the gathering before it
        requeue = _publisher(settings.project, requeue_topic) if requeue_topic else None
        sender = cls(claims, destination, api, tokens, settings.batch_max_events, settings.batch_wait_ms,
                     result_timeout, idle_ms=settings.batch_idle_ms, hold_ms=settings.batch_hold_ms,
                     requeue=requeue)  # fmt: skip
        sender.processor.claim_browser_events = settings.claim_browser_events
        sender.processor.max_order_age = dt.timedelta(days=settings.max_event_age_days)
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
                outcome = Outcome(Kind.RETRY, f"could not record a malformed message ({type(error).__name__})")
            else:
                outcome = Outcome(Kind.DEAD_MALFORMED, exc.reason, exc.ids.get("event_id"),
                                  {"dead_record": record_id})  # fmt: skip
        else:
            outcome = self._submit(envelope, message_id)
        self.counters.add(f"outcome.{outcome.kind}")
        return outcome

    def _submit(self, envelope: Envelope, message_id: str | None) -> Outcome:
        """The dispatcher's outcome; while the destination throttles, the push waits at the gate up to the hold.

        Past the hold it is re-published (a fresh message, whose delivery attempts start again) and
        acknowledged, so that throttling alone never spends the subscription's ``max_delivery_attempts``
        and never dead-letters an event; without a publisher it is answered 503 (one attempt spent).
        The pushes released together when the gate opens share one batch: one request, the probe.
        """
        deadline = time.monotonic() + self.throttle_hold
        held: Outcome | None = None
        while self.gate.wait_open(deadline - time.monotonic()):
            outcome = self.dispatcher.submit(envelope, message_id)
            if not (outcome.retry and outcome.details.get("throttled")):
                return outcome
            held = outcome
            if time.monotonic() >= deadline:
                break
        self.counters.add("throttle.held_past_hold")
        return self._requeue(envelope, held or self.processor.throttled_outcome(envelope))

    def _requeue(self, envelope: Envelope, held: Outcome) -> Outcome:
        if self.requeue is None:
            return held
        try:
            message_id = self.requeue(envelope)
        except Exception as exc:  # Pub/Sub trouble: the 503 brings this message back instead
            log.warning("could not re-publish a throttled event", error=type(exc).__name__, detail=str(exc)[:300])
            return held
        self.counters.add("throttle.requeued")
        reason = f"{held.reason}; re-published as message {message_id}, whose delivery attempts start again"
        return Outcome(Kind.RETRY, reason, envelope.event_id, {**held.details, "requeued": message_id})

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


def handle_push(sender: Sender, message: Any, message_id: str | None) -> Reply:
    """One push's answer: 200 with the outcome (acknowledged), or 503 so that Pub/Sub redelivers it."""
    outcome = sender.handle_message(message, message_id)
    logged = dataclasses.replace(outcome, details={**outcome.details, "message_id": message_id})
    if outcome.details.get("requeued"):
        # Its copy is on the topic: acknowledged, so this message spends no more delivery attempts.
        return Reply(200, {"outcome": "requeued"}, outcome=logged)
    if outcome.retry:
        # Any non-2xx makes Pub/Sub redeliver; an HTTP error (not a crash) logs no traceback.
        reason = f"retry later: {outcome.reason} (event_id {outcome.event_id})"
        return Reply(503, {"error": "retry later", "reason": reason}, outcome=logged)
    return Reply(200, {"outcome": outcome.kind}, outcome=logged)


def _publisher(project: str, topic: str) -> Callable[[Envelope], str]:
    """Publishes one envelope on ``topic`` (the client made on first use: the library is slow to import)."""
    made: list[Publisher] = []
    lock = threading.Lock()

    def publish(envelope: Envelope) -> str:
        with lock:
            if not made:
                from shared.infra.pubsub import EventPublisher, make_publisher_client

                made.append(EventPublisher(make_publisher_client(), project, topic))
        (message_id,) = made[0].publish([envelope])
        return message_id

    return publish


def push_refused(exc: PushRefused) -> Reply:
    """The answer to a body that is not a Pub/Sub push: 4xx with the reason, nothing recorded."""
    outcome = Outcome(Kind.REFUSED, exc.reason, details={"status": exc.status})
    return Reply(exc.status, {"error": "not a Pub/Sub push", "reason": exc.reason}, outcome=outcome)


def redrive_via_pubsub(
    claims: ClaimStore, records: Sequence[Mapping[str, Any]], publisher: Publisher
) -> list[tuple[str, str]]:
    """Republish dead records' envelopes (source ``redrive``) and mark them; (record id, message id) each."""
    done = []
    for record in records:
        envelope = Envelope.model_validate_json(record["envelope"]).model_copy(update={"source": "redrive"})
        (message_id,) = publisher.publish([envelope])
        claims.mark_redriven(record["id"], "pubsub", message_id)
        done.append((record["id"], message_id))
    return done

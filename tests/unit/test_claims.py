"""Unit tests of the sender's claims (shared.send.claims) and the batch processor against the in-memory stand-in.

No emulator and no HTTP: TikTok is a scripted client, Firestore the stand-in
of tests/unit/memory.py. What is checked is the claims' own logic (who wins,
when a claim is taken over, what finalizing writes) and the outcomes the
processor draws from it. That Firestore answers like the stand-in is
``tests/emulator/test_memory_store_contract.py``'s job; the emulator tests of
``tests/emulator/test_delivery_store.py`` still run the same logic for real.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

from shared.destinations.tiktok import DESTINATION as TIKTOK
from shared.domain.models import Envelope
from shared.infra.metrics import Counters
from shared.infra.store import DEAD_EVENTS, EVENT_CLAIMS, TTL_FIELD, Found, doc_id, utcnow
from shared.outcome import Kind
from shared.receive.orders import block_purchase
from shared.send.claims import ClaimDocuments, ClaimStore
from shared.send.dead import KIND_REJECTED, DeadRecord
from shared.send.decode import MalformedMessage
from shared.send.process import Processor
from shared.tiktok.api import ApiResult
from tests.unit.memory import MemoryStore
from tests.unit.test_delivery import PIXEL, make_envelope

LEASE = dt.timedelta(seconds=60)
TOKEN = "token-1"  # noqa: S105 (a test value)
OK_RESULT = ApiResult("ok", 0, "OK", request_id="rid-1")


class ScriptedTikTok:
    """Answers each request with ``answer(event ids)`` and keeps the event ids of every request."""

    def __init__(self, answer: Callable[[list[str]], ApiResult] = lambda ids: OK_RESULT) -> None:
        self.answer = answer
        self.requests: list[list[str]] = []

    def track(self, body: dict[str, Any], access_token: str) -> ApiResult:
        assert access_token == TOKEN
        ids = [event["event_id"] for event in body["data"]]
        self.requests.append(ids)
        return self.answer(ids)


def make_claims(store: MemoryStore, lease: dt.timedelta = LEASE) -> ClaimStore:
    return ClaimStore(store, lease, dt.timedelta(days=8), dt.timedelta(days=30), counters=Counters())


def make_processor(store: MemoryStore, tiktok: ScriptedTikTok, **kwargs: Any) -> Processor:
    return Processor(make_claims(store), TIKTOK, tiktok, {PIXEL: TOKEN}, counters=Counters(), **kwargs)  # type: ignore[arg-type]


def doc(store: MemoryStore, collection: str, envelope: Envelope) -> dict[str, Any] | None:
    return store.docs.get((collection, doc_id(*envelope.claim_key())))


def test_the_stand_in_is_what_claims_are_typed_against() -> None:
    assert isinstance(MemoryStore(), ClaimDocuments)


# --- claiming ----------------------------------------------------------------------------------


def test_the_first_claim_wins_and_a_live_claim_is_busy() -> None:
    store = MemoryStore()
    claims, envelope = make_claims(store), make_envelope()
    first = claims.claim([(envelope, "m1")])[envelope.claim_key()]
    assert (first.state, first.attempts) == ("claimed", 1) and first.update_time is not None
    busy = claims.claim([(envelope, "m2")])[envelope.claim_key()]
    assert busy.state == "busy" and busy.until > utcnow() and "lease until" in busy.detail
    claim_doc = doc(store, EVENT_CLAIMS, envelope)
    assert (claim_doc["state"], claim_doc["message_id"], claim_doc["attempts"]) == ("sending", "m1", 1)
    assert claim_doc[TTL_FIELD] > utcnow() + dt.timedelta(days=7)
    assert (claim_doc["source"], claim_doc["match_keys"]) == ("shopify", ["email"])
    # One create each; the loser's read of the live claim is one RPC more, and it wrote nothing.
    counts = claims.counters.snapshot()
    assert counts == {"firestore.rpcs": 3, "firestore.writes": 2, "firestore.reads": 1}


def test_a_sent_claim_makes_later_copies_duplicates_with_its_request_id() -> None:
    store, tiktok = MemoryStore(), ScriptedTikTok(lambda ids: ApiResult("ok", 0, "OK", request_id="rid-9"))
    envelope = make_envelope()
    assert [o.kind for o in make_processor(store, tiktok).process([(envelope, "m1")])] == [Kind.SENT]
    again = make_claims(store).claim([(envelope, "m2")])[envelope.claim_key()]
    assert (again.state, again.request_id) == ("sent", "rid-9")
    sent_doc = doc(store, EVENT_CLAIMS, envelope)
    assert (sent_doc["state"], sent_doc["request_id"], sent_doc["message_id"]) == ("sent", "rid-9", "m1")
    (copy,) = make_processor(store, tiktok).process([(envelope, "m3")])  # another instance: no memory of it
    assert (copy.kind, copy.details["request_id"]) == (Kind.DUPLICATE, "rid-9")
    assert tiktok.requests == [[envelope.event_id]]


def test_a_dead_attempts_claim_is_taken_over_after_its_lease_and_it_can_not_release_what_it_lost() -> None:
    store, envelope = MemoryStore(), make_envelope()
    died = make_claims(store, lease=dt.timedelta(0)).claim([(envelope, "m1")])[envelope.claim_key()]
    claims = make_claims(store)
    taken = claims.claim([(envelope, "m2")])[envelope.claim_key()]
    assert (taken.state, taken.attempts) == ("claimed", 2) and taken.update_time != died.update_time
    assert claims.counters.snapshot()["claims.taken_over"] == 1
    taken_doc = doc(store, EVENT_CLAIMS, envelope)
    assert (taken_doc["message_id"], taken_doc["attempts"], taken_doc["state"]) == ("m2", 2, "sending")
    # The first attempt waking up late: its release is refused (the claim is no longer the one it wrote).
    claims.finalize(released=[(envelope, died)])
    assert doc(store, EVENT_CLAIMS, envelope)["message_id"] == "m2"
    claims.finalize(released=[(envelope, taken)])
    assert doc(store, EVENT_CLAIMS, envelope) is None


class RivalStore(MemoryStore):
    """Another attempt acting once, right before (``before_read``) or after (``after_read``) a claim's read."""

    def __init__(self) -> None:
        super().__init__()
        self.before_read: Callable[[], Any] | None = None
        self.after_read: Callable[[], Any] | None = None

    def get_many(self, collection: str, keys: Sequence[Sequence[object]], **kwargs: Any) -> list[Found]:
        before, after, self.before_read, self.after_read = self.before_read, self.after_read, None, None
        if before:
            before()
        found = super().get_many(collection, keys, **kwargs)
        if after:
            after()
        return found


def test_of_two_attempts_taking_over_one_claim_only_the_first_gets_it() -> None:
    store, envelope = RivalStore(), make_envelope()
    make_claims(store, lease=dt.timedelta(0)).claim([(envelope, "m1")])
    rival = make_claims(store)
    store.after_read = lambda: rival.claim([(envelope, "rival")])
    lost = make_claims(store).claim([(envelope, "m2")])[envelope.claim_key()]
    assert (lost.state, lost.detail) == ("busy", "another attempt took it over first")
    assert doc(store, EVENT_CLAIMS, envelope)["message_id"] == "rival"


def test_a_claim_released_between_the_create_and_the_read_is_claimed_afresh() -> None:
    store, envelope = RivalStore(), make_envelope()
    holder = make_claims(store)
    held = holder.claim([(envelope, "m1")])[envelope.claim_key()]
    store.before_read = lambda: holder.finalize(released=[(envelope, held)])
    again = make_claims(store).claim([(envelope, "m2")])[envelope.claim_key()]
    assert (again.state, again.attempts) == ("claimed", 1)
    assert doc(store, EVENT_CLAIMS, envelope)["message_id"] == "m2"


def test_an_expired_claim_is_claimed_again_whatever_its_state() -> None:
    store = MemoryStore()
    past = utcnow() - dt.timedelta(seconds=1)
    for state in ("sent", "cancelled", "sending"):
        envelope = make_envelope()
        lease = utcnow() + dt.timedelta(hours=1)
        store.put(EVENT_CLAIMS, envelope.claim_key(), {"state": state, "lease_until": lease, TTL_FIELD: past})
        claim = make_claims(store).claim([(envelope, "m")])[envelope.claim_key()]
        assert (claim.state, claim.attempts) == ("claimed", 2), state
        assert doc(store, EVENT_CLAIMS, envelope)[TTL_FIELD] > utcnow()


def test_a_cancelled_tombstone_makes_the_purchase_skipped_and_nothing_sent() -> None:
    store, tiktok, envelope = MemoryStore(), ScriptedTikTok(), make_envelope()
    assert block_purchase(store, envelope.pixel_code, envelope.event_id, source="shopify", order_ref="o")
    assert make_claims(store).claim([(envelope, "m1")])[envelope.claim_key()].state == "cancelled"
    processor = make_processor(store, tiktok)
    for message_id in ("m2", "m3"):
        (outcome,) = processor.process([(envelope, message_id)])
        assert (outcome.kind, outcome.details["rule"]) == (Kind.SKIPPED, "cancelled")
        assert outcome.reason == "order cancelled before its Purchase was sent"
    assert tiktok.requests == [] and doc(store, EVENT_CLAIMS, envelope)["state"] == "cancelled"


def test_a_redriven_purchase_of_a_cancelled_order_is_skipped_and_its_dead_record_cleared() -> None:
    store, tiktok, envelope = MemoryStore(), ScriptedTikTok(), make_envelope()
    claims = make_claims(store)
    claim = claims.claim([(envelope, "m1")])[envelope.claim_key()]
    claims.finalize(dead=[(DeadRecord(envelope, KIND_REJECTED, "refused", 40002), claim)])
    assert block_purchase(store, envelope.pixel_code, envelope.event_id, source="shopify")
    (outcome,) = make_processor(store, tiktok).process([(envelope.model_copy(update={"source": "redrive"}), "m2")])
    assert (outcome.kind, outcome.details["rule"]) == (Kind.SKIPPED, "cancelled")
    assert tiktok.requests == [] and doc(store, DEAD_EVENTS, envelope) is None


# --- finalizing ---------------------------------------------------------------------------------


def test_finalize_marks_sent_releases_records_dead_and_clears_redriven_records_in_one_rpc() -> None:
    store = MemoryStore()
    claims = make_claims(store)
    sent, released, dead, redriven = (make_envelope() for _ in range(4))
    held = claims.claim([(e, f"m-{i}") for i, e in enumerate((sent, released, dead))])
    claims.finalize(dead=[(DeadRecord(redriven, KIND_REJECTED, "refused earlier", 40002), None)])
    claims.counters = Counters()
    record = DeadRecord(dead, KIND_REJECTED, "TikTok refused", 40002, "Invalid value", "rid-d", "m-2")
    report = claims.finalize(
        sent=[(sent, ApiResult("ok", 0, "OK", request_id="rid-s"))],
        released=[(released, held[released.claim_key()])],
        dead=[(record, held[dead.claim_key()])],
        undead=[redriven],
    )
    assert not report.sent_unmarked and not report.dead_unrecorded
    sent_doc = doc(store, EVENT_CLAIMS, sent)
    assert (sent_doc["state"], sent_doc["request_id"], sent_doc["message_id"]) == ("sent", "rid-s", "m-0")
    assert sent_doc["sent_at"] <= utcnow()
    assert doc(store, EVENT_CLAIMS, released) is None and doc(store, EVENT_CLAIMS, dead) is None
    dead_doc = doc(store, DEAD_EVENTS, dead)
    assert (dead_doc["state"], dead_doc["attempts"], dead_doc["code"], dead_doc["message_id"]) == (
        "dead",
        1,
        40002,
        "m-2",
    )
    assert json.loads(dead_doc["envelope"])["event_id"] == dead.event_id
    assert doc(store, DEAD_EVENTS, redriven) is None
    assert claims.counters.snapshot() == {"firestore.rpcs": 1, "firestore.writes": 2, "firestore.deletes": 3}


def test_a_dead_record_counts_each_death() -> None:
    store, envelope = MemoryStore(), make_envelope()
    claims = make_claims(store)
    for attempt in (1, 2, 3):
        claim = claims.claim([(envelope, f"m{attempt}")])[envelope.claim_key()]
        assert claim.state == "claimed"  # each death drops the claim: a later copy may try again
        claims.finalize(dead=[(DeadRecord(envelope, KIND_REJECTED, "refused", 40002), claim)])
        assert doc(store, DEAD_EVENTS, envelope)["attempts"] == attempt
    assert [r["id"] for r in claims.dead_records([envelope.event_id])] == [doc_id(*envelope.claim_key())]


def test_finalize_with_the_store_down_reports_what_it_could_not_write_and_does_not_raise() -> None:
    store = MemoryStore()
    claims = make_claims(store)
    sent, dead = make_envelope(), make_envelope()
    held = claims.claim([(sent, None), (dead, None)])
    store.fail = RuntimeError("unavailable")
    report = claims.finalize(
        sent=[(sent, OK_RESULT)], dead=[(DeadRecord(dead, KIND_REJECTED, "r"), held[dead.claim_key()])]
    )
    assert report.sent_unmarked == {sent.claim_key()} and report.dead_unrecorded == {dead.claim_key()}


def test_malformed_messages_are_recorded_without_their_bytes_and_can_be_marked_redriven() -> None:
    store = MemoryStore()
    claims = make_claims(store)
    data = b'{"email": "jane@example.com"}'
    record_id = claims.record_malformed("msg-1", MalformedMessage("invalid envelope: source: Field required"), data)
    (record,) = claims.dead_records()
    assert record["id"] == record_id and record["kind"] == "malformed" and record["data_bytes"] == len(data)
    assert "jane" not in json.dumps(record, default=str)
    claims.mark_redriven(record_id, "pubsub", "m-2")
    assert claims.dead_records() == []
    (redriven,) = claims.dead_records(include_redriven=True)
    assert (redriven["state"], redriven["redriven_via"], redriven["redrive_detail"]) == ("redriven", "pubsub", "m-2")


# --- the processor's outcomes from its claims ------------------------------------------------------


def test_a_transient_error_releases_the_claim_so_a_redelivery_sends() -> None:
    answers = iter([ApiResult("retry", 40100, "Too many requests"), OK_RESULT])
    store, envelope = MemoryStore(), make_envelope()
    tiktok = ScriptedTikTok(lambda ids: next(answers))
    processor = make_processor(store, tiktok)
    (outcome,) = processor.process([(envelope, "m1")])
    assert outcome.kind == Kind.RETRY and "40100" in outcome.reason
    assert doc(store, EVENT_CLAIMS, envelope) is None
    assert processor.process([(envelope, "m2")])[0].kind == Kind.SENT and len(tiktok.requests) == 2


def test_a_refused_event_is_dead_alone_and_the_rest_sent() -> None:
    store, envelopes = MemoryStore(), [make_envelope() for _ in range(3)]
    bad = envelopes[1].event_id

    def answer(ids: list[str]) -> ApiResult:
        if bad in ids:
            return ApiResult("reject", 40002, "Invalid value", request_id="rid-x", failed_indexes=(ids.index(bad),))
        return OK_RESULT

    outcomes = make_processor(store, ScriptedTikTok(answer)).process([(e, "m") for e in envelopes])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.DEAD, Kind.SENT]
    assert doc(store, DEAD_EVENTS, envelopes[1])["code"] == 40002
    assert doc(store, EVENT_CLAIMS, envelopes[1]) is None
    assert [doc(store, EVENT_CLAIMS, e)["state"] for e in (envelopes[0], envelopes[2])] == ["sent", "sent"]


def test_claims_unavailable_is_a_retry_and_nothing_is_sent() -> None:
    store, tiktok = MemoryStore(), ScriptedTikTok()
    store.fail = RuntimeError("deadline exceeded")
    (outcome,) = make_processor(store, tiktok).process([(make_envelope(), "m")])
    assert outcome.kind == Kind.RETRY and "Firestore unavailable for claims" in outcome.reason
    assert tiktok.requests == []


def test_browser_events_are_sent_unclaimed_and_recorded_once_after() -> None:
    store = MemoryStore()
    envelope = make_envelope(source="collect", event="ViewContent")
    before_send: list[int] = []
    tiktok = ScriptedTikTok(lambda ids: before_send.append(len(store.docs)) or OK_RESULT)
    processor = make_processor(store, tiktok)
    (outcome,) = processor.process([(envelope, "m1")])
    assert outcome.kind == Kind.SENT and before_send == [0]  # no claim before the send
    assert store.calls == ["bulk"]  # its whole record, in the final bulk write
    record = doc(store, EVENT_CLAIMS, envelope)
    assert (record["state"], record["attempts"], record["message_id"], record["source"]) == ("sent", 1, "m1", "collect")
    assert record["request_id"] == "rid-1" and record[TTL_FIELD] > utcnow()
    (copy,) = processor.process([(envelope, "m2")])
    assert (copy.kind, copy.reason) == (Kind.DUPLICATE, "sent by this instance moments ago")
    assert len(tiktok.requests) == 1 and store.calls == ["bulk"]


def test_a_browser_event_whose_record_could_not_be_written_is_retried() -> None:
    store = MemoryStore()
    envelope = make_envelope(source="collect", event="ViewContent")

    def answer(ids: list[str]) -> ApiResult:
        if not tiktok.requests[1:]:
            store.fail = RuntimeError("unavailable")  # Firestore goes down while TikTok answers the first
        return OK_RESULT

    tiktok = ScriptedTikTok(answer)
    processor = make_processor(store, tiktok)
    (outcome,) = processor.process([(envelope, "m1")])
    assert outcome.kind == Kind.RETRY and "could not be written" in outcome.reason
    store.fail = None
    assert processor.process([(envelope, "m2")])[0].kind == Kind.SENT  # not remembered as sent: recorded now
    assert doc(store, EVENT_CLAIMS, envelope)["message_id"] == "m2"

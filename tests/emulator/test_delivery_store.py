"""Claims, dead records and the batch processor on the real Firestore emulator (and the real sandbox)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.destinations.tiktok import DESTINATION as TIKTOK
from shared.infra.metrics import Counters
from shared.infra.store import DEAD_EVENTS, EVENT_CLAIMS, TTL_FIELD, doc_id, utcnow
from shared.outcome import Kind
from shared.receive.orders import block_purchase
from shared.send.claims import ClaimStore
from shared.send.dead import KIND_MISSING_TOKEN, KIND_REJECTED, DeadRecord
from shared.send.decode import MalformedMessage
from shared.send.process import Processor
from shared.tiktok.api import ApiResult, TikTokClient
from tests.unit.test_delivery import PIXEL, make_envelope
from tests.unit.test_tiktok_api import TOKEN, RecordingSandbox

LEASE = dt.timedelta(seconds=60)


def _claims(store: Any, lease: dt.timedelta = LEASE) -> ClaimStore:
    return ClaimStore(store, lease, dt.timedelta(days=8), dt.timedelta(days=30), counters=Counters())


def _doc(store: Any, collection: str, key: tuple) -> dict[str, Any] | None:
    snap = store.collection(collection).document(doc_id(*key)).get()
    return snap.to_dict() if snap.exists else None


@pytest.fixture
def sandbox() -> Iterator[RecordingSandbox]:
    server = RecordingSandbox()
    yield server
    server.close()


def test_first_claim_wins_and_a_live_claim_is_busy(store: Any) -> None:
    claims = _claims(store)
    envelope = make_envelope()
    first = claims.claim([(envelope, "m1")])[envelope.claim_key()]
    assert first.state == "claimed" and first.update_time is not None
    assert claims.claim([(envelope, "m2")])[envelope.claim_key()].state == "busy"
    doc = _doc(store, EVENT_CLAIMS, envelope.claim_key())
    assert doc["state"] == "sending" and doc["message_id"] == "m1" and doc[TTL_FIELD] > utcnow() + dt.timedelta(days=7)


def test_a_sent_claim_makes_later_copies_duplicates(store: Any) -> None:
    claims = _claims(store)
    envelope = make_envelope()
    claims.claim([(envelope, "m1")])
    claims.finalize(sent=[(envelope, ApiResult("ok", 0, "OK", request_id="rid-9"))])
    again = claims.claim([(envelope, "m2")])[envelope.claim_key()]
    assert (again.state, again.request_id) == ("sent", "rid-9")
    doc = _doc(store, EVENT_CLAIMS, envelope.claim_key())
    assert doc["state"] == "sent" and doc["request_id"] == "rid-9" and doc["sent_at"]


def test_a_dead_attempts_claim_is_taken_over_after_its_lease(store: Any) -> None:
    envelope = make_envelope()
    died = _claims(store, lease=dt.timedelta(0)).claim([(envelope, "m1")])[envelope.claim_key()]
    claims = _claims(store)
    taken = claims.claim([(envelope, "m2")])[envelope.claim_key()]
    assert (taken.state, taken.attempts) == ("claimed", 2)
    # The first attempt waking up late can not release the claim it lost.
    claims.finalize(released=[(envelope, died)])
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key())["message_id"] == "m2"
    claims.finalize(released=[(envelope, taken)])
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key()) is None


def test_an_expired_claim_is_claimed_again(store: Any) -> None:
    envelope = make_envelope()
    past = utcnow() - dt.timedelta(seconds=1)
    ref = store.collection(EVENT_CLAIMS).document(doc_id(*envelope.claim_key()))
    ref.set({"state": "sent", "request_id": "old", TTL_FIELD: past})
    assert _claims(store).claim([(envelope, "m")])[envelope.claim_key()].state == "claimed"


def test_claims_and_marks_are_one_rpc_each_per_batch(store: Any) -> None:
    claims = _claims(store)
    envelopes = [make_envelope() for _ in range(25)]
    result = claims.claim([(e, None) for e in envelopes])
    assert {c.state for c in result.values()} == {"claimed"}
    claims.finalize(sent=[(e, ApiResult("ok", 0, "OK", request_id="r")) for e in envelopes])
    counts = claims.counters.snapshot()
    assert counts == {"firestore.rpcs": 2, "firestore.writes": 50}


def test_dead_records_keep_the_envelope_reason_and_attempts(store: Any) -> None:
    claims = _claims(store)
    envelope = make_envelope()
    for attempt in (1, 2):
        claim = claims.claim([(envelope, f"m{attempt}")])[envelope.claim_key()]
        record = DeadRecord(envelope, KIND_REJECTED, "TikTok refused", 40002, "Invalid value", "rid", f"m{attempt}")
        report = claims.finalize(dead=[(record, claim)])
        assert not report.dead_unrecorded
    dead = _doc(store, DEAD_EVENTS, envelope.claim_key())
    assert dead["attempts"] == 2 and dead["code"] == 40002 and dead["state"] == "dead"
    assert json.loads(dead["envelope"])["event_id"] == envelope.event_id
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key()) is None  # a later copy can try again
    assert [r["id"] for r in claims.dead_records([envelope.event_id])] == [doc_id(*envelope.claim_key())]


def test_malformed_messages_are_recorded_without_their_bytes(store: Any) -> None:
    claims = _claims(store)
    data = b'{"email": "jane@example.com"}'
    record_id = claims.record_malformed("msg-1", MalformedMessage("invalid envelope: source: Field required"), data)
    doc = store.collection(DEAD_EVENTS).document(record_id).get().to_dict()
    assert doc["kind"] == "malformed" and doc["redrivable"] is False and doc["data_bytes"] == len(data)
    assert "jane" not in json.dumps(doc, default=str)


# --- the processor: claim, send, finalize ----------------------------------------


def _processor(store: Any, sandbox: RecordingSandbox, **kwargs: Any) -> Processor:
    return Processor(
        _claims(store), TIKTOK, TikTokClient(sandbox.api_url, 5), {PIXEL: TOKEN}, counters=Counters(), **kwargs
    )


def test_processor_delivers_a_batch_in_one_request(store: Any, sandbox: RecordingSandbox) -> None:
    processor = _processor(store, sandbox)
    envelopes = [make_envelope() for _ in range(10)]
    outcomes = processor.process([(e, None) for e in envelopes])
    assert [o.kind for o in outcomes] == [Kind.SENT] * 10
    assert len(sandbox.requests()) == 1
    assert sorted(e["event_id"] for e in sandbox.events()) == sorted(e.event_id for e in envelopes)
    again = processor.process([(e, None) for e in envelopes])
    assert {o.kind for o in again} == {Kind.DUPLICATE} and len(sandbox.requests()) == 1


def test_processor_dead_letters_the_bad_event_and_delivers_the_rest(store: Any, sandbox: RecordingSandbox) -> None:
    processor = _processor(store, sandbox)
    envelopes = [make_envelope() for _ in range(6)]
    bad = envelopes[3]
    sandbox.faults(fail_event_ids=[bad.event_id])
    outcomes = processor.process([(e, "m") for e in envelopes])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.SENT, Kind.SENT, Kind.DEAD, Kind.SENT, Kind.SENT]
    assert outcomes[3].details["code"] == 40002
    assert sorted(e["event_id"] for e in sandbox.events()) == sorted(e.event_id for e in envelopes if e is not bad)
    dead = _doc(store, DEAD_EVENTS, bad.claim_key())
    assert dead["code"] == 40002 and "fail_event_ids" in dead["message"]


def test_processor_without_token_dead_letters_naming_the_setting(store: Any, sandbox: RecordingSandbox) -> None:
    processor = _processor(store, sandbox)
    stranger = make_envelope(pixel_code="CNOTOKENPIXEL")
    (outcome,) = processor.process([(stranger, "m")])
    assert outcome.kind == Kind.DEAD and "TIKTOK_ACCESS_TOKEN" in outcome.reason
    assert _doc(store, DEAD_EVENTS, stranger.claim_key())["kind"] == KIND_MISSING_TOKEN
    assert sandbox.requests() == []


def test_processor_releases_claims_on_transient_errors(store: Any, sandbox: RecordingSandbox) -> None:
    processor = _processor(store, sandbox)
    envelope = make_envelope()
    sandbox.faults(error_rate=1.0, throttle=1)
    (outcome,) = processor.process([(envelope, "m")])
    assert outcome.kind == Kind.RETRY and "40100" in outcome.reason
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key()) is None
    sandbox.http.delete("/sandbox/faults")
    assert processor.process([(envelope, "m")])[0].kind == Kind.SENT


def test_copies_in_one_batch_send_once(store: Any, sandbox: RecordingSandbox) -> None:
    processor = _processor(store, sandbox)
    envelope = make_envelope()
    outcomes = processor.process([(envelope, "m1"), (envelope, "m2"), (envelope, "m3")])
    assert sorted(o.kind for o in outcomes) == [Kind.DUPLICATE, Kind.DUPLICATE, Kind.SENT]
    assert len(sandbox.events(event_id=envelope.event_id)) == 1


def test_an_event_that_can_not_be_serialised_is_dead_alone_and_the_rest_delivered(
    store: Any, sandbox: RecordingSandbox
) -> None:
    processor = _processor(store, sandbox)
    envelopes = [make_envelope() for _ in range(6)]
    # Valid as a model, but JSON has no NaN: building the request fails here, before TikTok.
    bad = envelopes[2] = envelopes[2].model_copy(update={"properties": make_envelope().properties.model_copy(
        update={"value": float("nan")})})  # fmt: skip
    outcomes = processor.process([(e, f"m{i}") for i, e in enumerate(envelopes)])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.SENT, Kind.DEAD, Kind.SENT, Kind.SENT, Kind.SENT]
    assert sorted(e["event_id"] for e in sandbox.events()) == sorted(e.event_id for e in envelopes if e is not bad)
    dead = _doc(store, DEAD_EVENTS, bad.claim_key())
    assert dead["kind"] == "unsendable" and "serialise" in dead["reason"] and dead["message_id"] == "m2"
    assert _doc(store, EVENT_CLAIMS, bad.claim_key()) is None  # a later fix and re-drive can claim it again


def test_a_takeover_after_the_lease_is_counted(store: Any) -> None:
    counters = Counters()
    claims = ClaimStore(store, dt.timedelta(seconds=0), dt.timedelta(days=8), dt.timedelta(days=30), counters)
    envelope = make_envelope()
    assert claims.claim([(envelope, "m1")])[envelope.claim_key()].state == "claimed"
    taken = claims.claim([(envelope, "m2")])[envelope.claim_key()]  # the first attempt's lease is over
    assert taken.state == "claimed" and taken.attempts == 2
    assert counters.snapshot()["claims.taken_over"] == 1


# --- a cancellation's tombstone on the Purchase (shared.receive.orders.block_purchase) ---------


def _tombstone(store: Any, envelope: Any) -> bool:
    return block_purchase(store, envelope.pixel_code, envelope.event_id, source="shopify", order_ref="o")


def test_a_cancelled_tombstone_makes_the_claim_cancelled_and_the_purchase_skipped_unsent(
    store: Any, sandbox: RecordingSandbox
) -> None:
    envelope = make_envelope()
    assert _tombstone(store, envelope)
    assert _claims(store).claim([(envelope, "m1")])[envelope.claim_key()].state == "cancelled"
    processor = _processor(store, sandbox)
    (outcome,) = processor.process([(envelope, "m2")])
    assert (outcome.kind, outcome.details["rule"]) == (Kind.SKIPPED, "cancelled")
    assert outcome.reason == "order cancelled before its Purchase was sent"
    assert sandbox.requests() == []
    # Nothing the sender did replaced the tombstone: a later copy is skipped too.
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key())["state"] == "cancelled"
    assert [processor.process([(envelope, m)])[0].kind for m in ("m3", "m4")] == [Kind.SKIPPED, Kind.SKIPPED]
    assert sandbox.requests() == []


def test_a_redriven_purchase_of_a_cancelled_order_is_skipped_and_its_dead_record_cleared(
    store: Any, sandbox: RecordingSandbox
) -> None:
    envelope = make_envelope()
    claims = _claims(store)
    claim = claims.claim([(envelope, "m1")])[envelope.claim_key()]
    record = DeadRecord(envelope, KIND_REJECTED, "TikTok refused", 40002, "Invalid value", "rid", "m1")
    claims.finalize(dead=[(record, claim)])  # drops the claim: the cancellation can take the key
    assert _tombstone(store, envelope)
    redriven = envelope.model_copy(update={"source": "redrive"})
    (outcome,) = _processor(store, sandbox).process([(redriven, "m2")])
    assert (outcome.kind, outcome.details["rule"]) == (Kind.SKIPPED, "cancelled")
    assert sandbox.requests() == []
    assert _doc(store, DEAD_EVENTS, envelope.claim_key()) is None  # settled: nothing left to re-drive
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key())["state"] == "cancelled"


def test_block_purchase_holds_on_a_repeat_and_yields_to_a_purchase_the_sender_claimed(
    store: Any, sandbox: RecordingSandbox
) -> None:
    cancelled_first = make_envelope()
    assert _tombstone(store, cancelled_first) is True
    assert _tombstone(store, cancelled_first) is True  # Shopify's retry of the same cancellation
    doc = _doc(store, EVENT_CLAIMS, cancelled_first.claim_key())
    assert (doc["state"], doc["event"], doc["pixel_code"]) == ("cancelled", "Purchase", PIXEL)

    being_sent = make_envelope()
    claim = _claims(store).claim([(being_sent, "m1")])[being_sent.claim_key()]
    assert claim.state == "claimed"
    assert _tombstone(store, being_sent) is False  # the sender holds it: it may be at TikTok already
    assert _doc(store, EVENT_CLAIMS, being_sent.claim_key())["state"] == "sending"

    sent = make_envelope()
    assert [o.kind for o in _processor(store, sandbox).process([(sent, "m1")])] == [Kind.SENT]
    assert _tombstone(store, sent) is False  # TikTok has no way to take a Purchase back
    assert _doc(store, EVENT_CLAIMS, sent.claim_key())["state"] == "sent"
    assert [e["event_id"] for e in sandbox.events()] == [sent.event_id]

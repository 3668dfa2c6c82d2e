"""Browser events in the sender: no claim before sending, one record once TikTok accepted them.

Against the real Firestore emulator and the sandbox. Order events keep their
claim (tests/emulator/test_delivery_store.py); these tests pin down what a browser
event costs and what its record still guarantees (the report, re-drive).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.destinations.tiktok import DESTINATION as TIKTOK
from shared.infra.metrics import Counters
from shared.infra.store import DEAD_EVENTS, EVENT_CLAIMS, TTL_FIELD, utcnow
from shared.outcome import Kind
from shared.send.process import Processor
from shared.tiktok.api import TikTokClient
from tests.emulator.test_delivery_store import _claims, _doc
from tests.unit.test_delivery import PIXEL, make_envelope
from tests.unit.test_tiktok_api import TOKEN, RecordingSandbox


@pytest.fixture
def sandbox() -> Iterator[RecordingSandbox]:
    server = RecordingSandbox()
    yield server
    server.close()


def _processor(store: Any, sandbox: RecordingSandbox, **kwargs: Any) -> tuple[Processor, Counters]:
    counters = Counters()
    claims = _claims(store)
    claims.counters = counters
    return Processor(
        claims, TIKTOK, TikTokClient(sandbox.api_url, 5), {PIXEL: TOKEN}, counters=counters, **kwargs
    ), counters


def browser_event(**overrides: Any):
    return make_envelope(source="collect", event="ViewContent", **overrides)


def test_a_browser_event_costs_one_write_its_record_after_tiktok_accepted_it(store, sandbox) -> None:
    processor, counters = _processor(store, sandbox)
    envelopes = [browser_event() for _ in range(5)]
    outcomes = processor.process([(e, f"m{i}") for i, e in enumerate(envelopes)])
    assert [o.kind for o in outcomes] == [Kind.SENT] * 5
    snapshot = counters.snapshot()
    assert snapshot["firestore.writes"] == 5 and snapshot["firestore.rpcs"] == 1
    assert snapshot.get("firestore.reads", 0) == 0
    record = _doc(store, EVENT_CLAIMS, envelopes[2].claim_key())
    assert record["state"] == "sent" and record["source"] == "collect" and record["message_id"] == "m2"
    assert record["request_id"] and record["sent_at"] and record["match_keys"] == ["email"]
    assert record["event_id"] == envelopes[2].event_id and record[TTL_FIELD] > utcnow()


def test_an_order_event_in_the_same_batch_still_claims_first(store, sandbox) -> None:
    processor, counters = _processor(store, sandbox)
    outcomes = processor.process([(browser_event(), "m1"), (make_envelope(), "m2")])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.SENT]
    # 1 claim + 1 mark for the order event, 1 record for the browser event; two RPCs (claim, finalize).
    assert counters.snapshot()["firestore.writes"] == 3 and counters.snapshot()["firestore.rpcs"] == 2


def test_a_redelivery_to_the_same_instance_is_answered_from_memory(store, sandbox) -> None:
    processor, counters = _processor(store, sandbox)
    envelope = browser_event()
    assert processor.process([(envelope, "m1")])[0].kind == Kind.SENT
    (again,) = processor.process([(envelope, "m1")])
    assert again.kind == Kind.DUPLICATE and "moments ago" in again.reason
    assert len(sandbox.events(event_id=envelope.event_id)) == 1 and counters.snapshot()["firestore.writes"] == 1


def test_a_redelivery_to_another_instance_is_sent_again_for_tiktok_to_merge(store, sandbox) -> None:
    envelope = browser_event()
    assert _processor(store, sandbox)[0].process([(envelope, "m1")])[0].kind == Kind.SENT
    assert _processor(store, sandbox)[0].process([(envelope, "m1")])[0].kind == Kind.SENT  # the documented trade-off
    assert [e["event_id"] for e in sandbox.events()] == [envelope.event_id] * 2
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key())["state"] == "sent"


def test_copies_of_a_browser_event_in_one_batch_still_go_once(store, sandbox) -> None:
    processor, _ = _processor(store, sandbox)
    envelope = browser_event()
    outcomes = processor.process([(envelope, "m1"), (envelope, "m2")])
    assert sorted(o.kind for o in outcomes) == [Kind.DUPLICATE, Kind.SENT]
    assert len(sandbox.events(event_id=envelope.event_id)) == 1


def test_a_redrive_of_a_recorded_browser_event_never_sends_it_again(store, sandbox) -> None:
    processor, _ = _processor(store, sandbox)
    envelope = browser_event()
    processor.process([(envelope, "m1")])
    redriven = envelope.model_copy(update={"source": "redrive"})
    (outcome,) = processor.process([(redriven, "m2")])
    assert outcome.kind == Kind.DUPLICATE and len(sandbox.events(event_id=envelope.event_id)) == 1


def test_with_the_setting_browser_events_are_claimed_like_order_events(store, sandbox) -> None:
    processor, counters = _processor(store, sandbox, claim_browser_events=True)
    envelope = browser_event()
    assert processor.process([(envelope, "m1")])[0].kind == Kind.SENT
    assert counters.snapshot()["firestore.writes"] == 2
    assert processor.process([(envelope, "m1")])[0].kind == Kind.DUPLICATE
    assert len(sandbox.events(event_id=envelope.event_id)) == 1


def test_a_transient_error_leaves_nothing_behind_and_the_redelivery_sends(store, sandbox) -> None:
    processor, counters = _processor(store, sandbox)
    envelope = browser_event()
    sandbox.faults(error_rate=1.0, throttle=1)
    (outcome,) = processor.process([(envelope, "m")])
    assert outcome.kind == Kind.RETRY and "40100" in outcome.reason
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key()) is None
    assert counters.snapshot().get("firestore.writes", 0) == 0 and counters.snapshot().get("firestore.deletes", 0) == 0
    sandbox.http.delete("/sandbox/faults")
    assert processor.process([(envelope, "m")])[0].kind == Kind.SENT  # not remembered as sent: it was not


def test_a_refused_browser_event_is_dead_and_its_sent_neighbours_recorded(store, sandbox) -> None:
    processor, _ = _processor(store, sandbox)
    envelopes = [browser_event() for _ in range(4)]
    sandbox.faults(fail_event_ids=[envelopes[1].event_id])
    outcomes = processor.process([(e, "m") for e in envelopes])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.DEAD, Kind.SENT, Kind.SENT]
    assert _doc(store, DEAD_EVENTS, envelopes[1].claim_key())["code"] == 40002
    assert _doc(store, EVENT_CLAIMS, envelopes[1].claim_key()) is None
    assert all(_doc(store, EVENT_CLAIMS, e.claim_key())["state"] == "sent" for e in envelopes if e is not envelopes[1])


def test_a_record_that_could_not_be_written_makes_the_message_come_back(store, sandbox) -> None:
    processor, _ = _processor(store, sandbox)
    envelope = browser_event()

    def failing_bulk(ops: list) -> list:
        raise RuntimeError("Firestore unavailable")

    processor.claims._bulk = failing_bulk  # type: ignore[method-assign]
    (outcome,) = processor.process([(envelope, "m")])
    # Sent, but without its record the report and re-drive could not know: Pub/Sub brings it back.
    assert outcome.kind == Kind.RETRY and "record" in outcome.reason
    assert len(sandbox.events(event_id=envelope.event_id)) == 1
    del processor.claims._bulk  # Firestore is back: the redelivery sends again (TikTok merges) and records it
    assert processor.process([(envelope, "m")])[0].kind == Kind.SENT
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key())["state"] == "sent"

"""The sender's throttle gate (shared.send.throttle) and what the sender does while it is closed.

A fake clock drives the gate, so minutes of throttling take no time and no
assertion is about speed: what is counted is TikTok requests (a scripted
client), Firestore calls (the in-memory stand-in) and the sender's answers.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from shared.destinations.tiktok import DESTINATION as TIKTOK
from shared.infra.metrics import Counters
from shared.outcome import Kind
from shared.send.claims import ClaimStore
from shared.send.sender import Sender, handle_push
from shared.send.throttle import ThrottleGate
from shared.tiktok.api import ApiResult, classify
from tests.unit.memory import MemoryStore
from tests.unit.test_claims import OK_RESULT, TOKEN, ScriptedTikTok, make_claims, make_processor
from tests.unit.test_delivery import PIXEL, make_envelope, message_for

THROTTLED = classify(200, {"code": 40100, "message": "Too many requests. Please retry later."})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock, **kwargs: Any) -> ThrottleGate:
    return ThrottleGate(base=1.0, ceiling=30.0, jitter=0.0, clock=clock, **kwargs)


# --- what counts as throttling ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "throttled"),
    [
        (200, {"code": 40100, "message": "Too many requests"}, True),
        (200, {"code": 40132, "message": "Frequency limited"}, True),
        (429, {"message": "slow down"}, True),
        (429, None, True),
        (503, {"code": 50002, "message": "Service unavailable"}, False),
        (200, {"code": 40700, "message": "?"}, False),
        (200, {"code": 0, "message": "OK"}, False),
        (200, {"code": 40002, "message": "Invalid field"}, False),
    ],
)
def test_throttling_is_40100_40132_and_http_429(status: int, body: Any, throttled: bool) -> None:
    answer = classify(status, body)
    assert answer.throttled is throttled
    if throttled:
        assert answer.verdict == "retry"


# --- the gate ----------------------------------------------------------------------------------


def test_each_throttled_answer_in_a_row_doubles_the_closed_time_up_to_the_ceiling() -> None:
    clock = Clock()
    g = gate(clock)
    assert not g.closed
    waits = []
    for _ in range(8):
        until = g.throttled()
        waits.append(until - clock.now)
        clock.now = until  # the probe goes as it opens, and is throttled again
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]


def test_an_accepted_answer_starts_the_backoff_over() -> None:
    clock = Clock()
    g = gate(clock)
    clock.now = g.throttled()
    clock.now = g.throttled()
    g.accepted()
    assert g.strikes == 0
    assert g.throttled() - clock.now == 1


def test_throttled_answers_of_the_same_moment_are_one_strike() -> None:
    clock = Clock()
    g = gate(clock)
    first = g.throttled()
    assert [g.throttled() for _ in range(5)] == [first] * 5
    assert g.strikes == 1


def test_jitter_spreads_a_fleet_within_its_bounds() -> None:
    clock = Clock()
    closes = {ThrottleGate(base=10, ceiling=10, jitter=0.2, clock=clock, rng=random.Random(seed)).throttled()
              for seed in range(20)}  # fmt: skip
    assert len(closes) > 10
    assert all(clock.now + 8 <= c <= clock.now + 12 for c in closes)


def test_wait_open_answers_at_once_when_open_and_gives_up_at_its_timeout() -> None:
    g = ThrottleGate(base=60, ceiling=60, jitter=0)
    assert g.wait_open(0)
    g.throttled()
    assert g.closed and not g.wait_open(0.01)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ThrottleGate(base=0)
    with pytest.raises(ValueError):
        ThrottleGate(base=5, ceiling=1)


# --- the processor behind the gate ---------------------------------------------------------------


def test_a_throttled_answer_closes_the_gate_and_later_batches_send_nothing_and_write_nothing() -> None:
    clock, store = Clock(), MemoryStore()
    tiktok = ScriptedTikTok(lambda ids: THROTTLED)
    processor = make_processor(store, tiktok, gate=gate(clock))
    first = processor.process([(make_envelope("a"), "m-a")])
    assert first[0].kind == Kind.RETRY and first[0].details["throttled"]
    calls = len(store.calls)
    later = processor.process([(make_envelope(f"b{i}"), f"m-b{i}") for i in range(50)])
    assert len(tiktok.requests) == 1
    assert len(store.calls) == calls, "a batch held at the gate touched Firestore"
    assert all(o.kind == Kind.RETRY and o.details["throttled"] for o in later)


def test_a_batch_split_into_requests_stops_at_the_first_throttled_one() -> None:
    clock, store = Clock(), MemoryStore()
    tiktok = ScriptedTikTok(lambda ids: THROTTLED)
    processor = make_processor(store, tiktok, gate=gate(clock), max_events=10)
    outcomes = processor.process([(make_envelope(f"e{i}"), None) for i in range(45)])  # five requests' worth
    assert len(tiktok.requests) == 1
    assert {o.kind for o in outcomes} == {Kind.RETRY}


def test_minutes_of_throttling_cost_one_request_per_backoff_however_many_pushes() -> None:
    # Ten minutes of throttling, a batch every 100 ms (6,000 batches): TikTok sees the probes only.
    clock, store = Clock(), MemoryStore()
    answers = {"now": THROTTLED}
    tiktok = ScriptedTikTok(lambda ids: answers["now"])
    processor = make_processor(store, tiktok, gate=gate(clock))
    start = clock.now
    for index in range(6000):
        clock.now = start + index * 0.1
        processor.process([(make_envelope(f"t{index}"), None)])
    throttled_requests = len(tiktok.requests)
    # Backoffs 1, 2, 4, 8, 16, then 30 s: 5 probes in the first 31 s, then one per 30 s.
    assert throttled_requests <= 6 + (600 - 31) / 30 + 1, throttled_requests
    answers["now"] = OK_RESULT
    clock.now += 31  # past the last backoff
    assert processor.process([(make_envelope("after"), None)])[0].kind == Kind.SENT
    assert processor.gate.strikes == 0


# --- the sender: waiting at the gate, then re-publishing ---------------------------------------


def _sender(store: MemoryStore, tiktok: ScriptedTikTok, g: ThrottleGate, requeued: list[str] | None) -> Sender:
    def requeue(envelope: Any) -> str:
        assert requeued is not None
        requeued.append(envelope.event_id)
        return f"new-{len(requeued)}"

    claims: ClaimStore = make_claims(store)
    return Sender(claims, TIKTOK, tiktok, {PIXEL: TOKEN}, max_events=1000, wait_ms=0, result_timeout=10,  # type: ignore[arg-type]
                  counters=Counters(), gate=g, throttle_hold=0.0,
                  requeue=requeue if requeued is not None else None)  # fmt: skip


def test_a_push_held_past_the_hold_is_re_published_and_acknowledged() -> None:
    store, requeued = MemoryStore(), []
    g = ThrottleGate(base=60, ceiling=60, jitter=0)
    g.throttled()
    tiktok = ScriptedTikTok()
    sender = _sender(store, tiktok, g, requeued)
    reply = handle_push(sender, message_for(make_envelope("held-1")), "m-1")
    assert reply.status == 200 and reply.body == {"outcome": "requeued"}
    assert requeued == ["held-1"] and tiktok.requests == []
    assert reply.outcome is not None and reply.outcome.kind == Kind.RETRY  # the event is still to be sent


def test_without_a_publisher_a_held_push_is_answered_503() -> None:
    store = MemoryStore()
    g = ThrottleGate(base=60, ceiling=60, jitter=0)
    g.throttled()
    reply = handle_push(_sender(store, ScriptedTikTok(), g, None), message_for(make_envelope("held-2")), "m-2")
    assert reply.status == 503


def test_a_push_that_finds_the_gate_open_is_sent_as_before() -> None:
    store, requeued = MemoryStore(), []
    tiktok = ScriptedTikTok(lambda ids: ApiResult("ok", 0, "OK", request_id="rid"))
    reply = handle_push(_sender(store, tiktok, ThrottleGate(), requeued), message_for(make_envelope("open-1")), "m-3")
    assert reply.status == 200 and reply.body == {"outcome": "sent"}
    assert requeued == [] and tiktok.requests == [["open-1"]]

"""The sender's pure parts: decoding messages, splitting and bisecting requests, micro-batching.

No Firestore and no HTTP here: ``deliver`` takes the send function as an
argument and the dispatcher takes the batch processor, so each is checked
with scripted answers (TikTok's, not Google's).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from shared.domain.models import Envelope
from shared.infra.metrics import Counters
from shared.outcome import Kind, Outcome
from shared.send.batching import Dispatcher
from shared.send.decode import MalformedMessage, decode_message
from shared.send.process import deliver
from shared.tiktok.api import ApiResult

PIXEL = "CTESTPIXEL0001"
EMAIL_HASH = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"


def make_envelope(event_id: str | None = None, **overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "source": "shopify",
        "pixel_code": PIXEL,
        "event": "Purchase",
        "event_id": event_id or f"test:{uuid.uuid4().hex}",
        "event_time": int(time.time()) - 60,
        "user": {"email": [EMAIL_HASH], "ip": "203.0.113.24"},
        "properties": {"currency": "USD", "value": 10.0, "order_id": "1001"},
        "consent": "granted",
    }
    return Envelope.model_validate({**fields, **overrides})


def message_for(envelope: Envelope | bytes | dict) -> dict[str, Any]:
    if isinstance(envelope, Envelope):
        data = envelope.to_json_bytes()
    elif isinstance(envelope, dict):
        data = json.dumps(envelope).encode()
    else:
        data = envelope
    return {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex, "attributes": {}}


# --- decoding ------------------------------------------------------------------


def test_decode_a_valid_message() -> None:
    envelope = make_envelope("e-1")
    assert decode_message(message_for(envelope)) == envelope


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (None, "not a Pub/Sub message"),
        ({}, "message.data is missing"),
        ({"data": "%%%not base64%%%"}, "not valid base64"),
        ({"data": base64.b64encode(b"{nope").decode()}, "not JSON"),
        ({"data": base64.b64encode(b"[1, 2]").decode()}, "not an object"),
        ({"data": base64.b64encode(b"\xff\xfe").decode()}, "not JSON"),
    ],
)
def test_malformed_messages_name_the_problem(message: Any, reason: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode_message(message)
    assert reason in caught.value.reason


def test_invalid_envelope_names_fields_never_values() -> None:
    document = make_envelope("e-raw").model_dump()
    document["user"]["email"] = ["Jane.Roe@Example.com"]  # raw: must never reach TikTok, nor our logs
    document["user"]["first_name"] = "Jane"
    with pytest.raises(MalformedMessage) as caught:
        decode_message(message_for(document))
    reason = caught.value.reason
    assert "user.email.0" in reason and "user.first_name" in reason
    assert "Jane" not in reason and "Example.com" not in reason
    assert caught.value.ids == {"pixel_code": PIXEL, "event": "Purchase", "event_id": "e-raw", "source": "shopify"}


# --- deliver: grouping, bisecting -----------------------------------------------


class ScriptedTikTok:
    """Answers like TikTok: refuses any request that holds a bad event id."""

    def __init__(self, bad: Sequence[str] = (), name_failures: bool = True, code: int = 40002) -> None:
        self.bad = set(bad)
        self.name_failures = name_failures
        self.code = code
        self.requests: list[list[str]] = []

    def __call__(self, group: list[Envelope]) -> ApiResult:
        ids = [e.event_id for e in group]
        self.requests.append(ids)
        failed = tuple(i for i, event_id in enumerate(ids) if event_id in self.bad)
        if not failed:
            return ApiResult("ok", 0, "OK", request_id=f"r{len(self.requests)}")
        named = failed if self.name_failures else ()
        return ApiResult("reject", self.code, f"Invalid value for data[{failed[0]}]", failed_indexes=named)


def test_one_request_per_pixel_and_test_code() -> None:
    envelopes = [
        make_envelope("p1"),
        make_envelope("p2"),
        make_envelope("t1", test_event_code="TEST123"),
        make_envelope("o1", pixel_code="COTHERPIXEL"),
    ]
    tiktok = ScriptedTikTok()
    results = deliver(envelopes, tiktok)
    assert sorted(tiktok.requests) == [["o1"], ["p1", "p2"], ["t1"]]
    assert all(r.ok for r in results.values()) and len(results) == 4


def test_requests_hold_at_most_max_events() -> None:
    envelopes = [make_envelope(f"m{i}") for i in range(7)]
    tiktok = ScriptedTikTok()
    deliver(envelopes, tiktok, max_events=3)
    assert [len(r) for r in tiktok.requests] == [3, 3, 1]


@pytest.mark.parametrize("name_failures", [True, False], ids=["failed_events named", "bisect"])
def test_a_bad_event_is_isolated_and_the_rest_delivered(name_failures: bool) -> None:
    envelopes = [make_envelope(f"b{i}") for i in range(16)]
    tiktok = ScriptedTikTok(bad={"b5", "b11"}, name_failures=name_failures)
    results = deliver(envelopes, tiktok)
    dead = sorted(key[2] for key, r in results.items() if not r.ok)
    assert dead == ["b11", "b5"]
    assert all(r.code == 40002 for key, r in results.items() if key[2] in dead)
    # every good event was accepted exactly once, each bad one refused on its own at last
    accepted = [i for request, r in zip(tiktok.requests, _answers(tiktok), strict=True) if r for i in request]
    assert sorted(accepted) == sorted(f"b{i}" for i in range(16) if i not in (5, 11))
    assert ["b5"] in tiktok.requests and ["b11"] in tiktok.requests
    assert len(tiktok.requests) <= (4 if name_failures else 2 * 2 * 4 + 1)


def _answers(tiktok: ScriptedTikTok) -> list[bool]:
    return [not (set(request) & tiktok.bad) for request in tiktok.requests]


def test_whole_request_refusals_are_not_bisected() -> None:
    envelopes = [make_envelope(f"t{i}") for i in range(8)]

    def refuse(group: list[Envelope]) -> ApiResult:
        calls.append(len(group))
        return ApiResult("reject", 40105, "Access token is invalid.", request_level=True)

    calls: list[int] = []
    results = deliver(envelopes, refuse)
    assert calls == [8]
    assert {r.code for r in results.values()} == {40105}


def test_transient_failure_inside_a_bisection_only_retries_that_part() -> None:
    envelopes = [make_envelope(f"x{i}") for i in range(4)]
    answers = iter(
        [
            ApiResult("reject", 40002, "bad"),  # [x0..x3] refused, nothing named
            ApiResult("retry", 50002, "busy"),  # [x0, x1]
            ApiResult("ok", 0, "OK", request_id="r3"),  # [x2, x3]
        ]
    )
    results = deliver(envelopes, lambda group: next(answers))
    assert {k[2]: r.verdict for k, r in results.items()} == {"x0": "retry", "x1": "retry", "x2": "ok", "x3": "ok"}


# --- the dispatcher --------------------------------------------------------------


class RecordingProcessor:
    def __init__(self, delay: float = 0.0, fail: bool = False, verdict: str = Kind.SENT) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.fail = fail
        self.verdict = verdict
        self._lock = threading.Lock()

    def __call__(self, items: Sequence[tuple[Envelope, str | None]]) -> list[Outcome]:
        with self._lock:
            self.batches.append([e.event_id for e, _ in items])
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("boom")
        return [Outcome(self.verdict, "done", e.event_id) for e, _ in items]


def _run_concurrently(dispatcher: Dispatcher, envelopes: list[Envelope]) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(envelopes)
    start = threading.Barrier(len(envelopes))

    def work(index: int) -> None:
        start.wait()
        outcomes[index] = dispatcher.submit(envelopes[index], f"m{index}")

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(envelopes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


def test_concurrent_invocations_share_batches() -> None:
    processor = RecordingProcessor()
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=300, result_timeout=10, counters=Counters())
    envelopes = [make_envelope(f"c{i}") for i in range(20)]
    outcomes = _run_concurrently(dispatcher, envelopes)
    assert [o.event_id for o in outcomes] == [e.event_id for e in envelopes]  # each got its own
    assert sorted(i for batch in processor.batches for i in batch) == sorted(e.event_id for e in envelopes)
    assert len(processor.batches) < 20


def test_a_batch_closes_when_full() -> None:
    processor = RecordingProcessor()
    # A timer far beyond the helper's 30 s join: only closing when full lets the threads finish.
    dispatcher = Dispatcher(processor, max_events=5, wait_ms=600_000, result_timeout=700, counters=Counters())
    _run_concurrently(dispatcher, [make_envelope(f"f{i}") for i in range(10)])
    assert [len(batch) for batch in processor.batches] == [5, 5]


def test_a_lone_event_goes_after_the_idle_gap_not_the_whole_wait() -> None:
    processor = RecordingProcessor()
    patient = Dispatcher(processor, max_events=1000, wait_ms=400, result_timeout=10, counters=Counters())
    started = time.monotonic()
    patient.submit(make_envelope("alone-1"))
    assert time.monotonic() - started >= 0.4  # without the idle rule: the whole wait
    eager = Dispatcher(processor, max_events=1000, wait_ms=400, result_timeout=10, counters=Counters(), idle_ms=10)
    started = time.monotonic()
    eager.submit(make_envelope("alone-2"))
    assert time.monotonic() - started < 0.3


def test_events_that_keep_joining_keep_the_batch_open_up_to_the_wait() -> None:
    processor = RecordingProcessor()
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=5000, result_timeout=10, counters=Counters(),
                            idle_ms=500)  # fmt: skip
    envelopes = [make_envelope(f"trickle{i}") for i in range(6)]
    threads = []
    for envelope in envelopes:  # one every 20 ms: each joins well within the 500 ms idle gap
        threads.append(threading.Thread(target=dispatcher.submit, args=(envelope,), daemon=True))
        threads[-1].start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(10)
    assert processor.batches == [[e.event_id for e in envelopes]]


def test_batching_off_processes_each_alone() -> None:
    processor = RecordingProcessor()
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=0, result_timeout=10, counters=Counters())
    assert not dispatcher.batching
    _run_concurrently(dispatcher, [make_envelope(f"o{i}") for i in range(8)])
    assert sorted(len(b) for b in processor.batches) == [1] * 8


def test_copies_in_flight_wait_for_the_first_and_are_duplicates() -> None:
    processor = RecordingProcessor(delay=0.2)
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=0, result_timeout=10, counters=Counters())
    envelope = make_envelope("same")
    outcomes = _run_concurrently(dispatcher, [envelope] * 10)
    assert processor.batches == [["same"]]
    assert sorted(o.kind for o in outcomes) == [Kind.DUPLICATE] * 9 + [Kind.SENT]


def test_copies_of_a_failing_event_are_retried_too() -> None:
    processor = RecordingProcessor(delay=0.2, verdict=Kind.RETRY)
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=0, result_timeout=10, counters=Counters())
    outcomes = _run_concurrently(dispatcher, [make_envelope("again")] * 5)
    assert {o.kind for o in outcomes} == {Kind.RETRY}


def test_a_crashing_batch_retries_every_event_and_frees_them() -> None:
    processor = RecordingProcessor(fail=True)
    dispatcher = Dispatcher(processor, max_events=1000, wait_ms=50, result_timeout=10, counters=Counters())
    outcomes = _run_concurrently(dispatcher, [make_envelope(f"k{i}") for i in range(6)])
    assert {o.kind for o in outcomes} == {Kind.RETRY}
    processor.fail = False
    assert dispatcher.submit(make_envelope("k0")).kind == Kind.SENT  # not stuck "in flight"

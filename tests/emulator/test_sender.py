"""The sender function in this process (functions-framework's app) against the emulators and a real sandbox.

Each test gets its own Firestore collection prefix and its own sandbox
(:class:`RecordingSandbox`, which also records the exact request bytes), so
faults injected here touch nothing else. The whole pipeline as real processes
is exercised in ``test_sender_stack.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import functions_framework
import pytest

from shared.domain.events import order_event_id
from shared.domain.identity import RawIdentity, build_user
from shared.domain.models import Envelope
from shared.infra.metrics import COUNTERS
from shared.infra.store import DEAD_EVENTS, EVENT_CLAIMS, TTL_FIELD, doc_id, utcnow
from tests.conftest import push_body
from tests.helpers import wait_until
from tests.unit.test_delivery import PIXEL, make_envelope
from tests.unit.test_tiktok_api import TOKEN, RecordingSandbox

ROOT = Path(__file__).resolve().parents[2]
SOURCE = str(ROOT / "functions" / "sender" / "main.py")
GOLDEN = ROOT / "tests" / "golden" / "purchase_request.json"
OTHER_PIXEL = "COTHERPIXEL0002"


@dataclass
class SenderUnderTest:
    app: Any
    module: Any

    def push(self, body: dict[str, Any]) -> int:
        # One test client per call: calls may come from many threads at once.
        return self.app.test_client().post("/", json=body).status_code

    def push_envelope(self, envelope: Envelope, message_id: str | None = None) -> int:
        return self.push(push_body(envelope.to_json_bytes(), message_id))


@pytest.fixture
def sandbox() -> Iterator[RecordingSandbox]:
    server = RecordingSandbox()
    yield server
    server.close()


@pytest.fixture
def make_sender(
    monkeypatch: pytest.MonkeyPatch, emulators: Any, collection_prefix: str, sandbox: RecordingSandbox
) -> Iterator[Callable[..., SenderUnderTest]]:
    made: list[SenderUnderTest] = []

    def make(**env: str) -> SenderUnderTest:
        settings = {
            "GOOGLE_CLOUD_PROJECT": emulators.project,
            "TIKTOK_PIXEL_CODE": PIXEL,
            "TIKTOK_ACCESS_TOKEN": TOKEN,
            "TIKTOK_API_URL": sandbox.api_url,
            "FIRESTORE_COLLECTION_PREFIX": collection_prefix,
            "CLAIM_LEASE_SECONDS": "5",
            "SENDER_BATCH_WAIT_MS": "30",
            **env,
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        app = functions_framework.create_app(target="sender", source=SOURCE)
        made.append(SenderUnderTest(app, sys.modules["main"]))
        return made[-1]

    yield make
    for sender in made:
        sender.module.reset()


def _concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _push_until_acknowledged(sender: SenderUnderTest, bodies: list[dict], max_rounds: int = 40) -> int:
    """Re-push (concurrently) every message not yet acknowledged, like Pub/Sub does; returns the rounds used."""
    pending = list(bodies)
    for round_number in range(1, max_rounds + 1):
        statuses = _concurrently([lambda b=b: sender.push(b) for b in pending])
        assert set(statuses) <= {200, 503}, statuses
        pending = [b for b, status in zip(pending, statuses, strict=True) if status != 200]
        if not pending:
            return round_number
    raise AssertionError(f"{len(pending)} messages still not acknowledged after {max_rounds} rounds")


def _doc(store: Any, collection: str, key: tuple) -> dict[str, Any] | None:
    snap = store.collection(collection).document(doc_id(*key)).get()
    return snap.to_dict() if snap.exists else None


# --- the adapter -----------------------------------------------------------------


def test_get_answers_health_and_metrics_without_touching_firestore(make_sender: Callable) -> None:
    sender = make_sender(FIRESTORE_EMULATOR_HOST="127.0.0.1:9")  # nothing listens there
    client = sender.app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/").status_code == 200
    metrics = client.get("/metrics").get_json()
    assert isinstance(metrics["counters"], dict)
    assert sender.module._runtime.peek() is None  # nothing was built for a health check


def test_golden_purchase_request(make_sender: Callable, sandbox: RecordingSandbox) -> None:
    """What TikTok receives for a sample Purchase, byte for byte, equals the checked-in Events API 2.0 body."""
    sender = make_sender()
    raw = RawIdentity(
        emails=[" John.Doe@Example.COM "],
        phones=[("+1 (213) 373-4253", "US")],
        external_ids=["user_123"],
        first_name="John",
        last_name="Doe",
        zip_code="94107",
        city="New York",
        state="NY",
        country="US",
        ttclid="E.C.P.v3fQ8kzLmN2pRtY7",
        ttp="2ZkYxqWl0aBcDeFgHiJk.tt.1",
        ip="203.0.113.24",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        locale="en-US",
    )
    product = {"content_id": "SKU1", "content_name": "Blue Shirt", "content_category": "apparel"}
    envelope = Envelope(
        source="shopify",
        pixel_code=PIXEL,
        event="Purchase",
        event_id=order_event_id("shopify", "example.myshopify.com", "820982911946154508", "Purchase"),
        event_time=1697783008,
        user=build_user(raw),
        page={"url": "https://example.myshopify.com/checkouts/c/abc/thank-you", "referrer": "https://www.tiktok.com/"},
        properties={
            "currency": "USD",
            "value": 125,
            "content_type": "product",
            "contents": [{**product, "price": 25, "quantity": 5, "brand": "Acme"}],
            "order_id": "1001",
            "shop_id": "example.myshopify.com",
        },
        consent="granted",
    )
    # The sample order was paid on 2023-10-20: the sender checks its order window on that day's clock.
    sender.module.runtime().processor.now = lambda: 1697783008 + 60
    assert sender.push_envelope(envelope) == 200
    (received,) = sandbox.received
    assert received["headers"]["Access-Token"] == TOKEN
    assert received["headers"]["Content-Type"] == "application/json"
    body = json.loads(received["body"])
    assert body == json.loads(GOLDEN.read_text())
    event = body["data"][0]
    assert type(event["event_time"]) is int and type(event["event_id"]) is str
    assert type(event["properties"]["value"]) is float and type(event["properties"]["contents"][0]["quantity"]) is int
    assert len(sandbox.events(event_id=envelope.event_id)) == 1  # and the sandbox's contract accepted it


# --- exactly once ------------------------------------------------------------------


def test_twenty_concurrent_copies_deliver_once(make_sender: Callable, sandbox: RecordingSandbox, store: Any) -> None:
    sender = make_sender()
    envelope = make_envelope()
    body = push_body(envelope.to_json_bytes())
    statuses = _concurrently([lambda: sender.push(body)] * 20)
    assert statuses == [200] * 20
    assert len(sandbox.events(event_id=envelope.event_id)) == 1
    assert sender.push(body) == 200  # a late redelivery: acknowledged as a duplicate
    assert len(sandbox.events(event_id=envelope.event_id)) == 1
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key())["state"] == "sent"


def _seed_with_every_fault(faults: dict[str, Any], draws: int) -> int:
    from sandbox.faults import FAULT_KINDS, parse_faults, pick_fault

    config = parse_faults(faults)
    for seed in range(10_000):
        rng = random.Random(seed)
        if set(FAULT_KINDS) <= {pick_fault(config, rng) for _ in range(draws)}:
            return seed
    raise AssertionError("no seed found")


@pytest.mark.parametrize("batch_wait_ms", ["30", "0"], ids=["batching", "no batching"])
def test_a_third_of_requests_failing_still_delivers_each_event_once(
    make_sender: Callable, sandbox: RecordingSandbox, batch_wait_ms: str
) -> None:
    # Batches of at most 5: the first round alone makes at least 6 requests. The seed is one
    # whose first 6 draws hold every kind of fault, so each kind really happens.
    sender = make_sender(TIKTOK_TIMEOUT_SECONDS="0.5", SENDER_BATCH_WAIT_MS=batch_wait_ms, SENDER_BATCH_MAX_EVENTS="5")
    faults = {"error_rate": 0.34, "http_5xx": 1, "throttle": 1, "timeout": 1, "timeout_seconds": 1.5}
    sandbox.faults(**faults, seed=_seed_with_every_fault(faults, draws=6))
    envelopes = [make_envelope() for _ in range(30)]
    bodies = [push_body(e.to_json_bytes()) for e in envelopes]
    bodies += bodies[:5]  # and some copies, as Pub/Sub delivers at least once
    _push_until_acknowledged(sender, bodies)
    for envelope in envelopes:
        assert len(sandbox.events(event_id=envelope.event_id)) == 1, envelope.event_id
    # The failures really happened (a timed-out request is logged once the sandbox stops sleeping).
    wait_until(lambda: {"http_5xx", "throttle", "timeout"} <= {r["fault"] for r in sandbox.requests()})


@pytest.mark.parametrize("hide_failed_events", [False, True], ids=["failed_events named", "bisect"])
def test_a_permanently_bad_event_is_dead_lettered_and_does_not_hold_up_others(
    make_sender: Callable, store: Any, hide_failed_events: bool
) -> None:
    sandbox = RecordingSandbox(hide_failed_events=hide_failed_events)
    try:
        sender = make_sender(TIKTOK_API_URL=sandbox.api_url, SENDER_BATCH_WAIT_MS="200")
        envelopes = [make_envelope() for _ in range(12)]
        bad = envelopes[7]
        sandbox.faults(fail_event_ids=[bad.event_id])
        statuses = _concurrently([lambda e=e: sender.push_envelope(e) for e in envelopes])
        assert statuses == [200] * 12  # all acknowledged, the bad one included
        delivered = {e["event_id"] for e in sandbox.events()}
        assert delivered == {e.event_id for e in envelopes if e is not bad}
        assert len(sandbox.events()) == 11
        dead = _doc(store, DEAD_EVENTS, bad.claim_key())
        assert dead["code"] == 40002 and "fail_event_ids" in dead["message"] and dead["kind"] == "rejected"
        assert json.loads(dead["envelope"])["event_id"] == bad.event_id
        assert sender.push_envelope(bad) == 200  # a redelivery is refused again, not retried forever
        assert _doc(store, DEAD_EVENTS, bad.claim_key())["attempts"] == 2
    finally:
        sandbox.close()


def test_a_malformed_message_is_acknowledged_and_recorded_without_pii(
    make_sender: Callable, store: Any, sandbox: RecordingSandbox, capsys: pytest.CaptureFixture
) -> None:
    sender = make_sender()
    document = make_envelope().model_dump()
    document["user"]["email"] = ["jane.roe@example.com"]  # not hashed: refused by the envelope
    message_id = uuid.uuid4().hex
    assert sender.push(push_body(json.dumps(document).encode(), message_id)) == 200
    assert sender.push(push_body(b"\x00not json", uuid.uuid4().hex)) == 200
    record = _doc(store, DEAD_EVENTS, ("malformed", message_id))
    assert record["kind"] == "malformed" and "user.email" in record["reason"]
    assert "jane" not in json.dumps(record, default=str)
    logs = capsys.readouterr().out
    assert "dead_malformed" in logs and "jane" not in logs
    assert sandbox.received == []


def test_transient_errors_ask_pubsub_to_redeliver(make_sender: Callable, sandbox: RecordingSandbox, store: Any) -> None:
    sender = make_sender()
    envelope = make_envelope()
    sandbox.faults(error_rate=1.0, http_5xx=1)
    assert sender.push_envelope(envelope) == 503
    assert _doc(store, EVENT_CLAIMS, envelope.claim_key()) is None  # released for the next attempt
    sandbox.http.delete("/sandbox/faults")
    assert sender.push_envelope(envelope) == 200
    assert len(sandbox.events(event_id=envelope.event_id)) == 1


def test_a_live_claim_waits_and_a_dead_attempts_claim_is_taken_over(
    make_sender: Callable, sandbox: RecordingSandbox, store: Any
) -> None:
    sender = make_sender()
    envelope = make_envelope()
    ref = store.collection(EVENT_CLAIMS).document(doc_id(*envelope.claim_key()))
    now = utcnow()
    claim = {"state": "sending", "attempts": 1, TTL_FIELD: now + dt.timedelta(days=8)}
    ref.set({**claim, "lease_until": now + dt.timedelta(days=1)})  # another attempt is sending it right now
    assert sender.push_envelope(envelope) == 503
    assert sandbox.received == []
    ref.set({**claim, "lease_until": now})  # that attempt died: its lease is over
    assert sender.push_envelope(envelope) == 200
    assert len(sandbox.events(event_id=envelope.event_id)) == 1
    assert ref.get().to_dict()["attempts"] == 2


# --- routing and batching ------------------------------------------------------------


def test_test_events_and_pixels_never_share_a_request(make_sender: Callable, sandbox: RecordingSandbox) -> None:
    tokens = json.dumps({PIXEL: TOKEN, OTHER_PIXEL: TOKEN})
    sender = make_sender(TIKTOK_ACCESS_TOKEN=tokens, SENDER_BATCH_WAIT_MS="200")
    envelopes = [make_envelope() for _ in range(4)]
    envelopes += [make_envelope(test_event_code="TEST123") for _ in range(3)]
    envelopes += [make_envelope(pixel_code=OTHER_PIXEL) for _ in range(3)]
    envelopes += [make_envelope(limited_data_use=True)]
    assert _concurrently([lambda e=e: sender.push_envelope(e) for e in envelopes]) == [200] * len(envelopes)
    where = {}
    for received in sandbox.received:
        body = json.loads(received["body"])
        for event in body["data"]:
            where[event["event_id"]] = (body["event_source_id"], body.get("test_event_code"))
    assert where == {e.event_id: (e.pixel_code, e.test_event_code) for e in envelopes}
    assert len(sandbox.received) < len(envelopes)  # and they were batched
    (limited,) = sandbox.events(event_id=envelopes[-1].event_id)
    assert limited["limited_data_use"] is True


def test_batching_cuts_requests_and_firestore_calls(make_sender: Callable, sandbox: RecordingSandbox) -> None:
    sender = make_sender(SENDER_BATCH_WAIT_MS="300")
    before = COUNTERS.snapshot()
    envelopes = [make_envelope() for _ in range(40)]
    assert _concurrently([lambda e=e: sender.push_envelope(e) for e in envelopes]) == [200] * 40
    after = COUNTERS.snapshot()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta["outcome.sent"] == 40
    assert delta["firestore.writes"] == 80  # claim + mark sent, nothing more
    assert delta["firestore.rpcs"] < 40 and delta["tiktok.requests"] < 40
    assert len(sandbox.received) == delta["tiktok.requests"]
    metrics = sender.app.test_client().get("/metrics").get_json()
    assert metrics["batching"] is True and metrics["counters"]["outcome.sent"] >= 40


def test_batching_off_sends_one_request_per_event(make_sender: Callable, sandbox: RecordingSandbox) -> None:
    sender = make_sender(SENDER_BATCH_WAIT_MS="0")
    envelopes = [make_envelope() for _ in range(6)]
    assert _concurrently([lambda e=e: sender.push_envelope(e) for e in envelopes]) == [200] * 6
    assert sorted(len(json.loads(r["body"])["data"]) for r in sandbox.received) == [1] * 6


# --- dead events re-driven after a fix ---------------------------------------------------


def test_missing_token_is_dead_then_redriven_directly_once(
    make_sender: Callable, sandbox: RecordingSandbox, store: Any, capsys: pytest.CaptureFixture
) -> None:
    from functions.sender import redrive

    sender = make_sender()
    envelope = make_envelope(pixel_code=OTHER_PIXEL)
    body = push_body(envelope.to_json_bytes())
    assert sender.push(body) == 200
    dead = _doc(store, DEAD_EVENTS, envelope.claim_key())
    assert dead["kind"] == "missing_token" and "TIKTOK_ACCESS_TOKEN" in dead["reason"]
    assert redrive.main(["--list"]) == 0
    assert envelope.event_id in capsys.readouterr().out

    # The fix: a token for that pixel. Then re-drive, twice: the second finds nothing to do.
    fixed = make_sender(TIKTOK_ACCESS_TOKEN=json.dumps({PIXEL: TOKEN, OTHER_PIXEL: TOKEN}))
    assert redrive.main(["--event-id", envelope.event_id, "--direct"]) == 0
    assert redrive.main(["--all", "--direct"]) == 0
    assert len(sandbox.events(event_id=envelope.event_id)) == 1
    assert _doc(store, DEAD_EVENTS, envelope.claim_key()) is None
    assert fixed.push(body) == 200  # the original message redelivered late: a duplicate
    assert len(sandbox.events(event_id=envelope.event_id)) == 1


def test_dead_event_redriven_through_pubsub_once(
    make_sender: Callable, sandbox: RecordingSandbox, store: Any, topic: Any
) -> None:
    from functions.sender import redrive

    sender = make_sender(PUBSUB_TOPIC=topic.topic)
    envelope = make_envelope()
    sandbox.faults(fail_event_ids=[envelope.event_id])
    assert sender.push_envelope(envelope) == 200
    assert _doc(store, DEAD_EVENTS, envelope.claim_key())["code"] == 40002

    sandbox.http.delete("/sandbox/faults")  # the fix
    assert redrive.main(["--all"]) == 0
    assert _doc(store, DEAD_EVENTS, envelope.claim_key())["state"] == "redriven"
    (message,) = topic.pull_all(1)
    republished = json.loads(message.data)
    assert republished["source"] == "redrive" and republished["event_id"] == envelope.event_id
    # Deliver it as the push subscription would, twice (at least once).
    for _ in range(2):
        assert sender.push(push_body(message.data, message.message_id)) == 200
    assert len(sandbox.events(event_id=envelope.event_id)) == 1
    assert _doc(store, DEAD_EVENTS, envelope.claim_key()) is None


def test_redrive_of_an_unknown_event_id_says_so(make_sender: Callable, capsys: pytest.CaptureFixture) -> None:
    from functions.sender import redrive

    make_sender()
    assert redrive.main(["--event-id", "no-such-event"]) == 1
    assert "no dead event" in capsys.readouterr().err


def test_first_invocation_builds_clients_once(make_sender: Callable) -> None:
    sender = make_sender()
    envelope = make_envelope()
    assert sender.push_envelope(envelope) == 200
    built = sender.module._runtime.peek()
    assert sender.push_envelope(make_envelope()) == 200
    assert sender.module._runtime.peek() is built
    assert built.client._http() is built.client._http()


def test_a_misconfigured_sender_asks_for_redelivery_naming_the_variable(make_sender: Callable) -> None:
    sender = make_sender(TIKTOK_TIMEOUT_SECONDS="soon")
    response = sender.app.test_client().post("/", json=push_body(make_envelope().to_json_bytes()))
    assert response.status_code == 503
    assert b"TIKTOK_TIMEOUT_SECONDS" in response.data

"""The sender end to end in the local stack: Pub/Sub emulator push -> sender process -> sandbox process.

Tests share the stack's sandbox, so each isolates itself by unique event ids;
the few that inject faults reset them before returning.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from shared.domain.models import Envelope
from shared.infra.store import DEAD_EVENTS, Store, doc_id
from tests.conftest import push_body
from tests.helpers import sandbox_events, wait_for_sandbox_events, wait_until
from tests.unit.test_delivery import EMAIL_HASH

pytestmark = pytest.mark.stack


def _envelope(stack: Any, **overrides: Any) -> Envelope:
    fields = {
        "source": "shopify",
        "pixel_code": stack.settings["TIKTOK_PIXEL_CODE"],
        "event": "Purchase",
        "event_id": f"stack:{uuid.uuid4().hex}",
        "event_time": int(time.time()) - 30,
        "user": {"email": [EMAIL_HASH], "ip": "203.0.113.24", "ttclid": "E.C.P.stack"},
        "properties": {"currency": "EUR", "value": 42.5, "order_id": "77"},
        "consent": "granted",
    }
    return Envelope.model_validate({**fields, **overrides})


def _request(stack: Any, request_id: str) -> dict[str, Any]:
    requests = httpx.get(stack.url("sandbox") + "/sandbox/requests", timeout=5).json()["requests"]
    (request,) = [r for r in requests if r["request_id"] == request_id]
    return request


def test_published_envelope_reaches_tiktok_once_through_the_push_subscription(stack: Any, publish: Any) -> None:
    sandbox = stack.url("sandbox")
    envelope = _envelope(stack)
    publish(envelope)
    (event,) = wait_for_sandbox_events(sandbox, 1, event_id=envelope.event_id)
    assert event["event_source_id"] == envelope.pixel_code and event.get("test_event_code") is None
    assert event["event"] == "Purchase" and event["event_time"] == envelope.event_time
    assert event["user"] == {"email": [EMAIL_HASH], "ip": "203.0.113.24", "ttclid": "E.C.P.stack"}
    assert event["properties"] == {"currency": "EUR", "value": 42.5, "order_id": "77"}
    request = _request(stack, event["request_id"])
    assert request["code"] == 0 and request["event_source_id"] == envelope.pixel_code
    time.sleep(2)  # room for a wrong redelivery to show up
    assert len(sandbox_events(sandbox, event_id=envelope.event_id)) == 1


def test_twenty_concurrent_pushes_of_one_message_deliver_once(stack: Any) -> None:
    envelope = _envelope(stack)
    body = push_body(envelope.to_json_bytes())
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: client.post(stack.url("sender") + "/", json=body).status_code, range(20)))
    assert statuses == [200] * 20
    assert len(sandbox_events(stack.url("sandbox"), event_id=envelope.event_id)) == 1


def test_concurrent_load_is_batched_and_each_event_delivered_once(stack: Any) -> None:
    envelopes = [_envelope(stack) for _ in range(120)]
    bodies = [push_body(e.to_json_bytes()) for e in envelopes]
    bodies += bodies[::6]  # Pub/Sub's at-least-once copies, mixed in
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda b: client.post(stack.url("sender") + "/", json=b).status_code, bodies))
    assert statuses == [200] * len(bodies)
    request_ids = set()
    for envelope in envelopes:
        (event,) = sandbox_events(stack.url("sandbox"), event_id=envelope.event_id)
        request_ids.add(event["request_id"])
    assert len(request_ids) < len(envelopes)  # concurrent invocations shared requests


def test_bad_event_dead_lettered_others_delivered_then_redriven_once(
    stack: Any, publish: Any, faults: Any, stack_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.sender import redrive

    sandbox = stack.url("sandbox")
    envelopes = [_envelope(stack) for _ in range(10)]
    bad = envelopes[4]
    faults(fail_event_ids=[bad.event_id])
    for envelope in envelopes:
        publish(envelope)
    for envelope in envelopes:
        if envelope is not bad:
            wait_for_sandbox_events(sandbox, 1, event_id=envelope.event_id)
    dead_ref = stack_store.collection(DEAD_EVENTS).document(doc_id(*bad.claim_key()))
    dead = wait_until(lambda: (snap := dead_ref.get()).exists and snap.to_dict())
    assert dead["code"] == 40002 and "data[" in dead["message"] and dead["state"] == "dead"
    assert sandbox_events(sandbox, event_id=bad.event_id) == []

    faults()  # the fix: the sandbox accepts the event now
    for name, value in stack.settings.items():
        monkeypatch.setenv(name, value)
    assert redrive.main(["--event-id", bad.event_id]) == 0
    wait_for_sandbox_events(sandbox, 1, event_id=bad.event_id)
    wait_until(lambda: not dead_ref.get().exists)  # the sender removed the record once delivered
    time.sleep(2)
    assert len(sandbox_events(sandbox, event_id=bad.event_id)) == 1


def test_transient_failures_are_redelivered_by_pubsub(stack: Any, publish: Any, faults: Any) -> None:
    sandbox = stack.url("sandbox")
    faults(error_rate=1.0, http_5xx=1)
    started = time.time()
    envelope = _envelope(stack)
    publish(envelope)

    def failed_once() -> bool:
        requests = httpx.get(sandbox + "/sandbox/requests", timeout=5).json()["requests"]
        return any(r["fault"] == "http_5xx" and r["received_at"] >= started for r in requests)

    wait_until(failed_once)
    faults()  # TikTok recovers; the emulator redelivers after its backoff
    wait_for_sandbox_events(sandbox, 1, event_id=envelope.event_id)
    time.sleep(2)
    assert len(sandbox_events(sandbox, event_id=envelope.event_id)) == 1


def test_sender_metrics_count_firestore_and_tiktok_calls(stack: Any) -> None:
    metrics = httpx.get(stack.url("sender") + "/metrics", timeout=5).json()
    assert metrics["batching"] in (True, None)
    counters = metrics["counters"]
    json.dumps(counters)  # plain numbers
    assert all(isinstance(v, int) for v in counters.values())
    assert httpx.get(stack.url("sender") + "/healthz", timeout=5).json() == {"status": "ok"}

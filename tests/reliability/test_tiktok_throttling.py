"""TikTok throttles everyone for half a minute at load: the sender backs off, nothing is lost or dead.

Every TikTok request is answered 40100 ("too many requests", the sandbox's
``throttle`` fault at a rate of 1) for ``THROTTLE_SECONDS`` while envelopes are
published at 20 a second. The local subscription redelivers a refused push
about once a second and dead-letters it after 20 attempts
(``localstack.MAX_DELIVERY_ATTEMPTS``): without the gate, half a minute of
throttling would spend them all. Counted at the sandbox: every event arrives
once, none is dead (Firestore's dead records, the dead-letter subscription, the
sender's ``dead`` outcomes), and the requests TikTok saw while it throttled
stay a handful (the gate's probes), not one per redelivered batch.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.reliability import harness, scenarios

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

THROTTLE_SECONDS = 30.0
EVENTS, PER_SECOND = 200, 20.0
# shared.budgets: backoffs of 1, 2, 4, 8, 16 then 30 s (+-20%) within 30 s make at most 6 probes an
# instance; the margin is for batches that were already past the gate when the first 40100 came.
MAX_THROTTLED_REQUESTS = 15


def _sender_counters(rs: scenarios.ReliabilityStack) -> dict[str, int]:
    return httpx.get(rs.url("sender") + "/metrics", timeout=10).json()["counters"]


def _dead_letters(rs: scenarios.ReliabilityStack, ids: set[str]) -> list[str]:
    """Event ids of ours on the dead-letter subscription (pulled and acknowledged: nothing else reads it here)."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    from shared.send.decode import envelope_ids

    subscriber = pubsub_v1.SubscriberClient()
    found = []
    while True:
        try:
            response = subscriber.pull(request={"subscription": rs.topology["dead_letter_subscription"],
                                                "max_messages": 500}, timeout=3)  # fmt: skip
        except gexc.DeadlineExceeded:
            break
        if not response.received_messages:
            break
        for received in response.received_messages:
            event_id = envelope_ids(received.message.data).get("event_id")
            if event_id in ids:
                found.append(event_id)
        subscriber.acknowledge(request={"subscription": rs.topology["dead_letter_subscription"],
                                        "ack_ids": [m.ack_id for m in response.received_messages]})  # fmt: skip
    return found


def test_minutes_of_throttling_at_load_lose_nothing_kill_nothing_and_cause_no_retry_storm(rstack) -> None:
    from google.cloud import pubsub_v1

    rs = rstack
    rs.ensure_up("sender")
    publisher = pubsub_v1.PublisherClient()
    envelopes = [scenarios._envelope(rs, i, "throttle") for i in range(EVENTS)]
    ids = {e.event_id for e in envelopes}
    before = _sender_counters(rs)
    rs.faults(error_rate=1.0, throttle=1)
    throttle_began = time.time()
    lifted = threading.Timer(THROTTLE_SECONDS, rs.faults)
    lifted.start()
    try:

        def publish(index: int) -> str:
            envelope = envelopes[index]
            return publisher.publish(rs.topology["topic"], envelope.to_json_bytes(),
                                     **envelope.pubsub_attributes()).result(timeout=30)  # fmt: skip

        harness.paced(PER_SECOND, EVENTS / PER_SECOND, publish, workers=8)
        lifted.join()
        throttle_ended = time.time()
        tally = harness.settle(rs.sandbox, ids, timeout=150, quiet=5)
    finally:
        lifted.cancel()
        rs.faults()
    after = _sender_counters(rs)
    during = [r for r in harness.sandbox_requests(rs.sandbox) if throttle_began <= r["received_at"] <= throttle_ended]
    throttled = [r for r in during if r["fault"] == "throttle"]
    dead_letters = _dead_letters(rs, ids)
    changed = [key for key in after if after.get(key, 0) != before.get(key, 0)]
    counted = {key: after[key] - before.get(key, 0) for key in changed
               if key.startswith(("outcome.", "throttle.", "tiktok."))}  # fmt: skip
    summary = {**tally.summary(), "throttled_requests": len(throttled), "requests_during_throttle": len(during),
               "dead_letters": len(dead_letters), "sender": counted}  # fmt: skip
    print("TikTok throttling everyone for", THROTTLE_SECONDS, "s:", summary)
    assert tally.lost == [], summary
    assert tally.duplicated == {}, summary
    assert dead_letters == [] and counted.get("outcome.dead", 0) == 0, f"throttling alone killed events: {summary}"
    assert len(throttled) <= MAX_THROTTLED_REQUESTS, f"a retry storm into a throttling TikTok: {summary}"

"""The Pub/Sub publisher against the real emulator."""

from __future__ import annotations

import time

from shared.domain.models import Envelope
from tests.conftest import decode_message


def make(event_id: str) -> Envelope:
    return Envelope(source="collect", pixel_code="PIX", event="AddToCart", event_id=event_id,
                    event_time=1_700_000_000, consent="granted")  # fmt: skip


def test_publish_returns_ids_and_messages_carry_envelope_and_safe_attributes(event_publisher, topic):
    ids = event_publisher.publish([make("a"), make("b")])
    assert len(ids) == 2 and all(ids)
    messages = topic.pull_all(2)
    assert sorted(decode_message(m)["event_id"] for m in messages) == ["a", "b"]
    assert dict(messages[0].attributes) == {"pixel_code": "PIX", "event": "AddToCart", "source": "collect"}
    assert Envelope.model_validate(decode_message(messages[0]))


def test_sequential_publishes_do_not_wait_on_the_default_10ms_batch_timer(event_publisher):
    event_publisher.publish([make("warm-up")])
    started = time.perf_counter()
    for i in range(20):
        event_publisher.publish([make(f"s{i}")])
    per_publish = (time.perf_counter() - started) / 20
    # With the client's default 10 ms batch latency each publish takes >= 10 ms.
    assert per_publish < 0.010, f"{per_publish * 1000:.1f} ms per publish"


def test_more_messages_than_one_rpc_takes_leave_in_several_and_all_arrive(event_publisher, topic):
    from shared.infra.metrics import COUNTERS
    from shared.infra.pubsub import MAX_MESSAGES_PER_RPC

    count = MAX_MESSAGES_PER_RPC + 5
    before = COUNTERS.snapshot().get("pubsub.rpcs", 0)
    ids = event_publisher.publish([make(f"bulk-{i}") for i in range(count)])
    assert len(set(ids)) == count
    assert COUNTERS.snapshot()["pubsub.rpcs"] - before == 2
    assert len({decode_message(m)["event_id"] for m in topic.pull_all(count)}) == count


def test_publish_async_overlaps_and_reports_a_missing_topic_as_its_own_failure(pubsub_clients, emulators):
    import pytest
    from google.api_core import exceptions

    from shared.infra.pubsub import EventPublisher

    missing = EventPublisher(pubsub_clients[0], emulators.project, "no-such-topic-here")
    future = missing.publish_async([make("lost")])
    with pytest.raises(exceptions.NotFound):
        future.result(timeout=15)

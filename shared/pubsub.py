"""Pub/Sub adapter: publish envelopes and wait for the server's acknowledgement.

A receiver must not answer 200 before its events are safely on the topic, so
``publish`` waits for the futures. With the client's default 10 ms batch timer
that would add 10 ms to every request; a 1 ms timer keeps single requests fast
while concurrent requests in one instance still share a batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from shared.metrics import COUNTERS
from shared.models import Envelope

PUBLISH_TIMEOUT_SECONDS = 10.0


def make_publisher_client(max_latency: float = 0.001):
    """A PublisherClient (honours PUBSUB_EMULATOR_HOST). Import kept local: it is slow."""
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=max_latency)
    )


class EventPublisher:
    def __init__(self, client: Any, project: str, topic: str) -> None:
        self.client = client
        self.topic_path = client.topic_path(project, topic)

    def publish(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Publish every envelope; returns the message ids once all are stored by Pub/Sub."""
        return self.finish(self.begin(envelopes))

    def begin(self, envelopes: Sequence[Envelope]) -> list[Any]:
        """Hand the envelopes to the client's batcher without waiting: one future each.

        Envelopes begun together (a group commit's requests) leave in one RPC.
        """
        futures = []
        for envelope in envelopes:
            data = envelope.to_json_bytes()
            COUNTERS.add("pubsub.messages")
            COUNTERS.add("pubsub.bytes", len(data))
            futures.append(self.client.publish(self.topic_path, data, **envelope.pubsub_attributes()))
        return futures

    def finish(self, futures: Sequence[Any], timeout: float = PUBLISH_TIMEOUT_SECONDS) -> list[str]:
        """The message ids of :meth:`begin`'s futures; raises the first failure, or on timeout."""
        deadline = time.monotonic() + timeout
        return [future.result(timeout=max(0.0, deadline - time.monotonic())) for future in futures]


def publisher_from_settings(settings: Any) -> EventPublisher:
    """The publisher for a receiver's settings (project and PUBSUB_TOPIC)."""
    return EventPublisher(make_publisher_client(), settings.project, settings.pubsub_topic)

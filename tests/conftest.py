"""Test fixtures: the real emulators, isolated per test, and the whole local stack.

- ``emulators`` (session): the Firestore and Pub/Sub emulators of the Google
  Cloud CLI on free ports, started once per test process and stopped after.
- ``store`` (per test): a :class:`shared.store.Store` whose collections carry
  a unique prefix, so tests never see each other's documents.
- ``topic`` (per test): a fresh topic with a pull subscription, to publish to
  and to prove what was (or was not) published.
- ``stack`` (session): every function and the TikTok sandbox as real
  processes against the emulators, with the production Pub/Sub topology.
"""

from __future__ import annotations

import base64
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import localstack  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a pipeline setting leaked from the developer's shell."""
    for name in list(os.environ):
        if name in localstack.DEV_SETTINGS or name in (
            "PIPELINE_TENANTS",
            "TIKTOK_API_URL",
            "FIRESTORE_COLLECTION_PREFIX",
        ):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def emulators() -> Iterator[localstack.Emulators]:
    emulators = localstack.Emulators(
        project="test-project", pubsub_port=localstack.free_port(), firestore_port=localstack.free_port()
    )
    emulators.start()
    saved = {k: os.environ.get(k) for k in emulators.env}
    os.environ.update(emulators.env)
    try:
        yield emulators
    finally:
        emulators.stop()
        localstack.restore_environ(saved)


@pytest.fixture(scope="session")
def firestore_client(emulators: localstack.Emulators) -> Any:
    from shared.store import make_client

    return make_client(emulators.project)


@pytest.fixture
def collection_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}_"


@pytest.fixture
def store(firestore_client: Any, collection_prefix: str) -> Any:
    from shared.store import Store

    return Store(firestore_client, prefix=collection_prefix)


@dataclass
class TopicUnderTest:
    project: str
    topic: str
    subscription_path: str
    subscriber: Any

    def pull(self, max_messages: int = 100, timeout: float = 2.0) -> list[Any]:
        """Pull and ack what is on the subscription now (empty list if nothing arrives in ``timeout``)."""
        from google.api_core import exceptions as gexc

        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription_path, "max_messages": max_messages},
                timeout=timeout,
            )
        except gexc.DeadlineExceeded:
            return []
        received = list(response.received_messages)
        if received:
            self.subscriber.acknowledge(
                request={"subscription": self.subscription_path, "ack_ids": [m.ack_id for m in received]}
            )
        return [m.message for m in received]

    def pull_all(self, expected: int, timeout: float = 10.0) -> list[Any]:
        import time

        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            messages += self.pull(timeout=1.0)
        return messages


@pytest.fixture(scope="session")
def pubsub_clients(emulators: localstack.Emulators) -> tuple[Any, Any]:
    from google.cloud import pubsub_v1

    from shared.pubsub import make_publisher_client

    return make_publisher_client(), pubsub_v1.SubscriberClient()


@pytest.fixture
def topic(emulators: localstack.Emulators, pubsub_clients: tuple[Any, Any]) -> TopicUnderTest:
    publisher, subscriber = pubsub_clients
    name = f"t-{uuid.uuid4().hex[:12]}"
    topic_path = publisher.topic_path(emulators.project, name)
    publisher.create_topic(name=topic_path)
    subscription_path = subscriber.subscription_path(emulators.project, name + "-pull")
    subscriber.create_subscription(name=subscription_path, topic=topic_path)
    return TopicUnderTest(emulators.project, name, subscription_path, subscriber)


@pytest.fixture
def event_publisher(topic: TopicUnderTest, pubsub_clients: tuple[Any, Any]) -> Any:
    from shared.pubsub import EventPublisher

    return EventPublisher(pubsub_clients[0], topic.project, topic.topic)


def decode_message(message: Any) -> dict[str, Any]:
    import json

    return json.loads(message.data.decode())


def push_body(data: bytes, message_id: str | None = None, attributes: dict[str, str] | None = None) -> dict:
    """The JSON body a Pub/Sub push subscription POSTs (what functions-framework converts)."""
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": message_id or uuid.uuid4().hex,
            "attributes": attributes or {},
            "publishTime": "2026-11-24T00:00:00Z",
        },
        "subscription": "projects/test-project/subscriptions/test",
    }


@dataclass
class RunningStack:
    stack: localstack.Stack
    emulators: localstack.Emulators
    topology: dict[str, str]
    settings: dict[str, str]

    def url(self, name: str) -> str:
        return self.stack.url(name)


@contextmanager
def running_stack(emulators: localstack.Emulators, **overrides: str) -> Iterator[RunningStack]:
    """The local pipeline as `make run` starts it, on free ports, with its own topic and collections."""
    settings = {
        **localstack.DEV_SETTINGS,
        "GOOGLE_CLOUD_PROJECT": emulators.project,
        "PUBSUB_TOPIC": f"stack-{uuid.uuid4().hex[:8]}",
        "FIRESTORE_COLLECTION_PREFIX": f"stack{uuid.uuid4().hex[:8]}_",
        # Short lease so redelivery tests do not wait a minute.
        "CLAIM_LEASE_SECONDS": "5",
        "LOG_LEVEL": "DEBUG",
        **overrides,
        **emulators.env,
    }
    ports = {name: localstack.free_port() for name in (*localstack.FUNCTIONS, "sandbox")}
    running = localstack.Stack(settings=settings, ports=ports)
    topology = localstack.create_topology(emulators.project, settings["PUBSUB_TOPIC"], running.url("sender") + "/")
    running.start()
    try:
        yield RunningStack(running, emulators, topology, settings)
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack(emulators: localstack.Emulators) -> Iterator[RunningStack]:
    """The stack most stack tests share for the session."""
    with running_stack(emulators) as running:
        yield running


@pytest.fixture(scope="module")
def own_stack(emulators: localstack.Emulators) -> Iterator[RunningStack]:
    """A stack of the module's own, for tests that count everything a stack holds (late events of other tests)."""
    with running_stack(emulators) as running:
        yield running


@pytest.fixture(scope="module")
def stack_store(stack: RunningStack, firestore_client: Any) -> Any:
    """A store over the stack's own collections, to look at what its functions wrote."""
    from shared.store import Store

    return Store(firestore_client, prefix=stack.settings["FIRESTORE_COLLECTION_PREFIX"])


@pytest.fixture
def publish(stack: RunningStack, pubsub_clients: tuple[Any, Any]) -> Any:
    """Publish an envelope on the stack's events topic, as a receiver would."""
    publisher = pubsub_clients[0]

    def send(envelope: Any) -> str:
        future = publisher.publish(stack.topology["topic"], envelope.to_json_bytes(), **envelope.pubsub_attributes())
        return future.result(timeout=10)

    return send


@pytest.fixture
def faults(stack: RunningStack) -> Iterator[Any]:
    """Set the sandbox's faults for one test; cleared after it."""
    import httpx

    url = stack.url("sandbox") + "/sandbox/faults"

    def set_faults(**config: Any) -> None:
        httpx.post(url, json=config, timeout=5).raise_for_status()

    yield set_faults
    httpx.delete(url, timeout=5).raise_for_status()

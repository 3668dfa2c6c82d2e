"""Test fixtures: the real emulators, isolated per test, and the whole local stack.

The tests are in tiers, one folder each, so a reader sees what each needs:
``unit`` (pure logic, in-memory stand-ins), ``emulator`` (the Firestore and
Pub/Sub emulators), ``stack`` (every function and the sandbox as processes),
``browser`` (a real Chromium), ``infra`` (Terraform and bundles, offline),
``reliability`` (faults and kills against the stack). A test is refused at collection
in a folder lighter than the fixtures it uses, and in one heavier (tests/tiers.py).

- ``emulators`` (session): the Firestore and Pub/Sub emulators of the Google
  Cloud CLI on free ports, started once per test process and stopped after.
- ``store`` (per test): a :class:`shared.infra.store.Store` whose collections carry
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
import time
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

from tests import tiers  # noqa: E402


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
    from shared.infra.store import make_client

    return make_client(emulators.project)


@pytest.fixture
def collection_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}_"


@pytest.fixture
def store(firestore_client: Any, collection_prefix: str) -> Any:
    from shared.infra.store import Store

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

    from shared.infra.pubsub import make_publisher_client

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
    from shared.infra.pubsub import EventPublisher

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
def running_stack(emulators: localstack.Emulators, with_shop: bool = False, **overrides: str) -> Iterator[RunningStack]:
    """The local pipeline as `make run` starts it, on free ports, with its own topic and collections.

    ``with_shop``: the local shop (sandbox/shop) runs too, as under `make run`, delivering its webhooks to this
    stack's functions (``localstack.shop_credentials`` gives what reads it).
    """
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
    names = (*localstack.FUNCTIONS, "sandbox", *(("shop",) if with_shop else ()))
    ports = {name: localstack.free_port() for name in names}
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
    from shared.infra.store import Store

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


class Downstream:
    """The sender's real claim-send-record path for what a test's receiver published, and TikTok's count.

    Receivers no longer deduplicate order events: the sender's claim on the
    deterministic event_id does (shared.receive.orders). A receiver test that proves
    "one Purchase" therefore pushes every message its receiver published
    through a :class:`shared.send.process.Processor` (claims in the test's own
    Firestore collections, the TikTok sandbox in a thread), each message as
    its own push and all of them at once, as Pub/Sub does, and counts what
    TikTok received.
    """

    def __init__(self, store: Any) -> None:
        import datetime as dt

        from shared.infra.metrics import Counters
        from shared.send.claims import ClaimStore
        from tests.unit.test_tiktok_api import RecordingSandbox

        self.sandbox = RecordingSandbox()
        self.claims = ClaimStore(store, dt.timedelta(seconds=60), dt.timedelta(days=8), dt.timedelta(days=30),
                                 counters=Counters())  # fmt: skip

    def deliver(self, messages: list[Any], within: float = 30.0) -> list[str]:
        """The sender's final outcome kind for each Pub/Sub message (pulled from a topic).

        All are pushed at once; those answered ``retry`` (a copy held by a
        concurrent attempt) are pushed again, as Pub/Sub redelivers them, until
        every message has a final answer.
        """
        from concurrent.futures import ThreadPoolExecutor

        from shared.destinations.tiktok import DESTINATION as TIKTOK
        from shared.send.decode import decode_message
        from shared.send.process import Processor
        from shared.tiktok.api import TikTokClient
        from tests.unit.test_tiktok_api import TOKEN

        envelopes = [decode_message({"data": base64.b64encode(m.data).decode()}) for m in messages]
        tokens = {e.pixel_code: TOKEN for e in envelopes}
        processor = Processor(self.claims, TIKTOK, TikTokClient(self.sandbox.api_url, 5), tokens)

        def push(index: int) -> str:
            return processor.process([(envelopes[index], f"m-{index}")])[0].kind

        kinds: dict[int, str] = {}
        pending = list(range(len(envelopes)))
        deadline = time.monotonic() + within
        with ThreadPoolExecutor(max_workers=max(1, len(envelopes))) as pool:
            while pending:
                kinds.update(zip(pending, pool.map(push, pending), strict=True))
                pending = [i for i in pending if kinds[i] == "retry"]
                if pending and time.monotonic() > deadline:
                    raise AssertionError(f"{len(pending)} message(s) still answered retry after {within} s")
                time.sleep(0.05 if pending else 0)
        return [kinds[i] for i in range(len(envelopes))]

    def events(self, **filters: str) -> list[dict[str, Any]]:
        """The events TikTok accepted, optionally those whose fields equal ``filters``."""
        return self.sandbox.events(**filters)

    def close(self) -> None:
        self.sandbox.close()


@pytest.fixture
def downstream(store: Any) -> Iterator[Downstream]:
    """The sender and TikTok behind a receiver test's topic (see :class:`Downstream`)."""
    running = Downstream(store)
    yield running
    running.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{tiers.EXEMPT_MARKER}(reason): the test starts its tier's processes itself (`make run` as a subprocess), "
        "so it asks for no fixture of its tier; the reason says what it starts",
    )


def _from_a_conftest(fixturedef: Any) -> bool:
    """A fixture of a conftest.py of tests/ (a test module's own ``store`` may be an in-memory stand-in)."""
    module = getattr(fixturedef.func, "__module__", "")
    return module == __name__ or (module.startswith("tests.") and module.endswith(".conftest"))


def _tier_fixtures(item: pytest.Item) -> tuple[set[str], bool]:
    """The tier fixtures in the test's whole fixture closure, and whether it asks for ``emulators`` itself.

    Asking for ``emulators`` in the test or in a fixture of its own module is how a test that
    starts a stack of its own (``running_stack(emulators, ...)``) says so.
    """
    info = getattr(item, "_fixtureinfo", None)
    closure = set(getattr(item, "fixturenames", ()))
    tier_names = tiers.EMULATOR_FIXTURES | tiers.STACK_FIXTURES | tiers.BROWSER_FIXTURES
    if info is None:
        return closure & tier_names, False
    uses = {name for name in closure & tier_names
            if (defs := info.name2fixturedefs.get(name)) and _from_a_conftest(defs[-1])}  # fmt: skip
    own = [d for name in closure for d in info.name2fixturedefs.get(name, ()) if not _from_a_conftest(d)]
    asks_itself = "emulators" in info.argnames or any("emulators" in d.argnames for d in own)
    return uses, asks_itself


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tiers honest both ways: each test in the lightest folder that gives it what it uses."""
    tests = ROOT / "tests"
    problems = []
    for item in items:
        parts = Path(item.path).relative_to(tests).parts if Path(item.path).is_relative_to(tests) else ()
        if len(parts) < 2:
            continue
        exempt = item.get_closest_marker(tiers.EXEMPT_MARKER)
        if exempt is not None and not (exempt.kwargs.get("reason") or exempt.args):
            raise pytest.UsageError(f"{item.nodeid}: {tiers.EXEMPT_MARKER} needs a reason (what the test starts)")
        uses, asks_itself = _tier_fixtures(item)
        problem = tiers.refusal(item.nodeid, parts[0], uses, starts_a_stack=asks_itself, exempt=exempt is not None)
        if problem:
            problems.append(problem)
    if problems:
        raise pytest.UsageError("\n".join(problems))

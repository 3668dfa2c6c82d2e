"""`make redrive` reads the dead-letter subscription too (Pub/Sub emulator, Firestore emulator).

Each test gets its own events topic, named as the stack names it, with the
dead-letter topic and subscription beside it (``<topic>-dead-letter``) and a
pull subscription on the events topic to see what was republished.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from functions.sender import redrive
from tests.conftest import TopicUnderTest
from tests.unit.test_delivery import PIXEL, make_envelope
from tests.unit.test_tiktok_api import TOKEN


@dataclass
class DeadLetterTopology:
    events: TopicUnderTest  # the events topic, with a pull subscription standing in for the push one
    dead_topic: str
    dead_subscription: str

    def dead_letter(self, data: bytes, attempts: int = 5, **attributes: str) -> str:
        """Publish as Pub/Sub does when it gives up on a message; its message id."""
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        attributes = {**attributes, redrive.DELIVERY_COUNT_ATTRIBUTE: str(attempts)}
        return publisher.publish(self.dead_topic, data, **attributes).result(timeout=10)

    def waiting(self) -> int:
        """How many messages the dead-letter subscription holds now (pulled, then given back)."""
        queue = redrive.DeadLetterQueue.connect(self.events.project, self.events.topic, None)
        held = queue.hold_all()
        queue.release(held)
        return len(held)


@pytest.fixture
def dead_letters(topic: TopicUnderTest, pubsub_clients: tuple[Any, Any]) -> DeadLetterTopology:
    publisher, subscriber = pubsub_clients
    dead_topic = publisher.topic_path(topic.project, topic.topic + redrive.DEAD_LETTER_SUFFIX)
    publisher.create_topic(name=dead_topic)
    dead_subscription = subscriber.subscription_path(topic.project, topic.topic + redrive.DEAD_LETTER_SUFFIX)
    subscriber.create_subscription(name=dead_subscription, topic=dead_topic, ack_deadline_seconds=60)
    return DeadLetterTopology(topic, dead_topic, dead_subscription)


@pytest.fixture
def sender_env(
    monkeypatch: pytest.MonkeyPatch, emulators: Any, collection_prefix: str, topic: TopicUnderTest
) -> Callable[[], None]:
    def apply() -> None:
        for name, value in {
            "GOOGLE_CLOUD_PROJECT": emulators.project,
            "TIKTOK_PIXEL_CODE": PIXEL,
            "TIKTOK_ACCESS_TOKEN": TOKEN,
            "TIKTOK_API_URL": "http://127.0.0.1:9/open_api/v1.3/event/track/",  # never called here
            "FIRESTORE_COLLECTION_PREFIX": collection_prefix,
            "PUBSUB_TOPIC": topic.topic,
        }.items():
            monkeypatch.setenv(name, value)

    apply()
    return apply


def test_list_shows_dead_letters_with_their_ids_and_gives_them_back(
    dead_letters: DeadLetterTopology, sender_env: Callable, capsys: pytest.CaptureFixture
) -> None:
    envelope = make_envelope()
    first = dead_letters.dead_letter(envelope.to_json_bytes(), **envelope.pubsub_attributes())
    second = dead_letters.dead_letter(b"\x00 not an envelope", attempts=7)
    assert redrive.main(["--list"]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("dead-letter")]
    assert len(lines) == 2
    (line,) = [line for line in lines if f"message={first} " in line]
    assert envelope.event_id in line and "attempts=5" in line and PIXEL in line
    assert any(f"message={second} attempts=7" in line for line in lines)
    assert "0 dead event(s) in Firestore, 2 message(s) in the dead-letter subscription" in err
    assert dead_letters.waiting() == 2  # listing acknowledged nothing
    assert dead_letters.events.pull(timeout=1) == []  # ...and republished nothing

    assert redrive.main(["--list", "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {record["message_id"] for record in shown} == {first, second}
    assert all(record["source"] == "dead-letter" for record in shown)


def test_redrive_republishes_dead_letters_unchanged_then_acknowledges_them(
    dead_letters: DeadLetterTopology, sender_env: Callable, capsys: pytest.CaptureFixture
) -> None:
    wanted, other = make_envelope(), make_envelope()
    for envelope in (wanted, other):
        dead_letters.dead_letter(envelope.to_json_bytes(), **envelope.pubsub_attributes())

    assert redrive.main(["--event-id", wanted.event_id]) == 0
    (message,) = dead_letters.events.pull_all(1, timeout=5)
    assert message.data == wanted.to_json_bytes()  # the same bytes: the sender's claims dedupe it
    assert message.attributes["event"] == "Purchase" and message.attributes["redriven_from"] == "dead-letter"
    assert dead_letters.waiting() == 1  # the other one stays

    assert redrive.main(["--all"]) == 0
    (message,) = dead_letters.events.pull_all(1, timeout=5)
    assert json.loads(message.data)["event_id"] == other.event_id
    assert dead_letters.waiting() == 0
    assert "0 Firestore record(s) and 1 dead-letter message(s) re-driven" in capsys.readouterr().err


def test_a_dead_letter_whose_republish_fails_stays_on_the_subscription(
    dead_letters: DeadLetterTopology, sender_env: Callable, capsys: pytest.CaptureFixture
) -> None:
    from google.api_core import exceptions as gexc

    envelope = make_envelope()
    dead_letters.dead_letter(envelope.to_json_bytes())

    class FailingApi:
        def publish(self, **_: Any) -> Any:
            raise gexc.ServiceUnavailable("Pub/Sub is down")

    queue = redrive.DeadLetterQueue.connect(dead_letters.events.project, dead_letters.events.topic, None)
    queue.publisher = type("Publisher", (), {"api": FailingApi()})()
    assert redrive.main(["--all"], dead_letters=queue) == 1
    assert "ServiceUnavailable" in capsys.readouterr().out
    assert dead_letters.waiting() == 1  # not acknowledged: nothing lost
    assert dead_letters.events.pull(timeout=1) == []

    assert redrive.main(["--all"]) == 0  # Pub/Sub is back
    (message,) = dead_letters.events.pull_all(1, timeout=5)
    assert message.data == envelope.to_json_bytes()
    assert dead_letters.waiting() == 0


def test_without_a_dead_letter_subscription_firestore_records_are_still_listed(
    sender_env: Callable, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("PUBSUB_TOPIC", f"no-such-{uuid.uuid4().hex[:8]}")
    assert redrive.main(["--list"]) == 0
    err = capsys.readouterr().err
    assert "no dead-letter subscription" in err and "0 message(s) in the dead-letter subscription" in err

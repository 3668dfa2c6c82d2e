"""Inspect and re-drive dead events once their cause is fixed (a token rotated, a bug fixed, TikTok back).

Dead events wait in two places, and every command covers both:

- Firestore's ``dead_events``: events TikTok refused for good, events of a
  pixel without a token, malformed messages (the sender recorded them and
  acknowledged the message);
- the dead-letter subscription (``$PUBSUB_TOPIC-dead-letter``): messages Pub/Sub
  gave up pushing after its maximum delivery attempts, because the sender kept
  answering "retry later" (TikTok or Firestore down for long, the sender
  misconfigured or unreachable).

Usage (from the repository root, with the sender's environment)::

    python -m functions.sender.redrive --list              # both sources, newest first, then counts
    python -m functions.sender.redrive --all               # republish everything to PUBSUB_TOPIC
    python -m functions.sender.redrive --event-id ID ...   # only these event ids
    python -m functions.sender.redrive --all --direct      # Firestore's: send from here instead

Re-driven Firestore records carry ``source="redrive"`` and go through the
same claims as any event, so an event already delivered is not sent twice.
The record is marked ``redriven`` when republished and deleted by the sender
once the event is delivered; if TikTok refuses it again it is dead again,
with the new reason. Malformed messages are listed but can not be re-driven
(their bytes were not kept).

Dead-letter messages are republished as they are (same bytes and attributes)
and acknowledged only once Pub/Sub has stored the copy, so a failure in
between leaves the message where it was. ``--list`` pulls them to show them
and gives them back at once. ``--direct`` does not apply to them.
Exit status: 0 done, 1 some events failed again or could not be republished, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.config import ConfigError, ReceiverSettings, SenderSettings
from shared.outcome import Kind
from shared.send import ClaimStore, Sender, envelope_ids, redrive_via_pubsub

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    from shared.infra.pubsub import Publisher

DEAD_LETTER_SUFFIX = "-dead-letter"  # as Terraform and scripts/localstack.py name it
# Pub/Sub's own attribute on a dead-lettered message: how many pushes it got.
DELIVERY_COUNT_ATTRIBUTE = "CloudPubSubDeadLetterSourceDeliveryCount"
PULL_PAGE = 100
MAX_HELD = 10_000  # messages held (not acknowledged) at once while listing or filtering
PUBLISH_TIMEOUT_SECONDS = 30.0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m functions.sender.redrive", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list dead events of both sources and exit")
    what.add_argument("--all", action="store_true", help="re-drive every dead event")
    what.add_argument("--event-id", action="append", metavar="ID", help="re-drive this event id (repeatable)")
    parser.add_argument("--direct", action="store_true", help="Firestore's: send to TikTok from here, not via Pub/Sub")
    parser.add_argument("--topic", help="Pub/Sub topic to republish to (default: $PUBSUB_TOPIC)")
    parser.add_argument("--dead-letter-subscription", metavar="NAME",
                        help="subscription of the dead-letter topic (default: <topic>-dead-letter)")  # fmt: skip
    parser.add_argument("--include-redriven", action="store_true", help="--list: also show re-driven records")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser.parse_args(argv)


# --- the dead-letter subscription ------------------------------------------------------


@dataclass
class DeadLetter:
    """One message Pub/Sub gave up pushing; ``ids`` are the envelope's routing ids when it has them."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: Any = None
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def attempts(self) -> str | None:
        return self.attributes.get(DELIVERY_COUNT_ATTRIBUTE)

    def record(self) -> dict[str, Any]:
        """What --list shows: ids, attempts, times; never the event's content."""
        return {
            "source": "dead-letter",
            "message_id": self.message_id,
            "attempts": self.attempts,
            "published_at": self.publish_time,
            **{key: self.ids.get(key) for key in ("pixel_code", "event", "event_id")},
            "envelope_source": self.ids.get("source"),
        }


class DeadLetterQueue:
    """Pull, show, republish and acknowledge the messages of the dead-letter subscription."""

    def __init__(self, subscriber: SubscriberClient, subscription: str, publisher: PublisherClient, topic: str) -> None:
        self.subscriber = subscriber
        self.subscription = subscription
        self.publisher = publisher  # a PublisherClient: publishes through its generated API, awaited
        self.topic = topic

    @classmethod
    def connect(cls, project: str, topic: str, subscription: str | None) -> DeadLetterQueue:
        import google.cloud.pubsub_v1 as pubsub_v1

        from shared.infra.pubsub import make_publisher_client

        subscriber = pubsub_v1.SubscriberClient()
        publisher = make_publisher_client()
        name = subscription or topic + DEAD_LETTER_SUFFIX
        return cls(subscriber, subscriber.subscription_path(project, name), publisher,
                   publisher.topic_path(project, topic))  # fmt: skip

    def pull(self, limit: int = PULL_PAGE) -> list[DeadLetter]:
        """Up to ``limit`` messages now, held for the subscription's ack deadline; [] when there are none."""
        from google.api_core import exceptions as gexc

        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": limit, "return_immediately": True},
                timeout=10,
            )
        except gexc.DeadlineExceeded:
            return []
        letters = []
        for received in response.received_messages:
            message = received.message
            letters.append(
                DeadLetter(
                    received.ack_id,
                    message.message_id,
                    bytes(message.data),
                    dict(message.attributes),
                    message.publish_time,
                    envelope_ids(bytes(message.data)),
                )  # fmt: skip
            )
        return letters

    def release(self, letters: Sequence[DeadLetter]) -> None:
        """Give messages back at once (a zero ack deadline), for the next pull or the next operator."""
        for start in range(0, len(letters), 1000):
            ack_ids = [letter.ack_id for letter in letters[start : start + 1000]]
            self.subscriber.modify_ack_deadline(
                request={"subscription": self.subscription, "ack_ids": ack_ids, "ack_deadline_seconds": 0}
            )

    def hold_all(self) -> list[DeadLetter]:
        """Every message (up to MAX_HELD), each pulled once and held; call :meth:`release` after."""
        held: list[DeadLetter] = []
        seen: set[str] = set()
        while len(held) < MAX_HELD:
            page = self.pull(min(PULL_PAGE, MAX_HELD - len(held)))
            if not page:
                break
            held += page
            # A long listing can outlive the ack deadline of its first pages: shown once each.
            if seen & {letter.message_id for letter in page}:
                break
            seen |= {letter.message_id for letter in page}
        return held

    def redrive(self, letter: DeadLetter) -> str:
        """Republish one message to the events topic, then acknowledge it; the new message id.

        Raises (and leaves the message on the subscription) when the publish
        fails: the acknowledgement comes only after Pub/Sub stored the copy.
        """
        from google.pubsub_v1 import types

        # Pub/Sub's own dead-letter attributes describe the last trip; it sets them again if need be.
        attributes = {k: v for k, v in letter.attributes.items() if not k.startswith("CloudPubSubDeadLetter")}
        copy = types.PubsubMessage(data=letter.data, attributes={**attributes, "redriven_from": "dead-letter"})
        response = self.publisher.api.publish(topic=self.topic, messages=[copy], timeout=PUBLISH_TIMEOUT_SECONDS)
        new_id: str
        (new_id,) = response.message_ids
        self.subscriber.acknowledge(request={"subscription": self.subscription, "ack_ids": [letter.ack_id]})
        return new_id


def redrive_dead_letters(
    queue: DeadLetterQueue, wanted: Callable[[DeadLetter], bool], report: Callable[[str], None]
) -> tuple[int, int]:
    """Republish every message ``wanted`` picks, page by page; (republished, failed)."""
    done = failed = 0
    skipped: list[DeadLetter] = []  # held until the end, so the next page brings new messages
    try:
        while len(skipped) < MAX_HELD:
            page = queue.pull()
            if not page:
                break
            for letter in page:
                if not wanted(letter):
                    skipped.append(letter)
                    continue
                try:
                    new_id = queue.redrive(letter)
                except Exception as exc:  # noqa: BLE001 (any failure leaves the message where it was)
                    failed += 1
                    skipped.append(letter)
                    report(f"failed     dead-letter message {letter.message_id}: {type(exc).__name__}: {exc}")
                else:
                    done += 1
                    report(f"published  dead-letter message {letter.message_id} as message {new_id}")
    finally:
        queue.release(skipped)
    return done, failed


# --- the command -------------------------------------------------------------------------


def _line(record: dict[str, Any]) -> str:
    if record.get("source") == "dead-letter":
        when = record.get("published_at")
        return (
            f"{'dead-letter':11} message={record['message_id']} attempts={record.get('attempts')} "
            f"{record.get('pixel_code') or '-'} {record.get('event') or '-'} {record.get('event_id') or '-'} "
            f"published_at={when.isoformat() if when else '-'}"
        )
    when = record.get("dead_at")
    return (
        f"{record.get('state', '?'):11} {record.get('kind', '?'):13} code={record.get('code')} "
        f"attempts={record.get('attempts')} {record.get('pixel_code', '-')} {record.get('event', '-')} "
        f"{record.get('event_id', '-')} dead_at={when.isoformat() if when else '-'} reason={record.get('reason')}"
    )


def _show(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        fields = {k: v for k, v in record.items() if k != "envelope"}  # ids and reasons, not the event itself
        print(json.dumps(fields, default=str))
    else:
        print(_line(record))


def _dead_letter_queue(args: argparse.Namespace, settings: SenderSettings, topic: str) -> DeadLetterQueue | None:
    from google.api_core import exceptions as gexc

    queue = DeadLetterQueue.connect(settings.project, topic, args.dead_letter_subscription)
    try:
        queue.subscriber.get_subscription(request={"subscription": queue.subscription}, timeout=10)
    except gexc.NotFound:
        print(f"no dead-letter subscription {queue.subscription}: skipped (--dead-letter-subscription)",
              file=sys.stderr)  # fmt: skip
        return None
    return queue


def main(
    argv: Sequence[str] | None = None,
    sender: Sender | None = None,
    publisher: Publisher | None = None,
    dead_letters: DeadLetterQueue | None = None,
) -> int:
    args = _parse(argv)
    try:
        settings = SenderSettings.from_env()
        sender = sender or Sender.from_settings(settings)
        topic = args.topic or ReceiverSettings.from_env().pubsub_topic
    except ConfigError as exc:
        print(f"configuration: {exc}", file=sys.stderr)
        return 2
    queue = dead_letters or _dead_letter_queue(args, settings, topic)
    claims: ClaimStore = sender.claims
    records = claims.dead_records(None if args.all or args.list else args.event_id, args.include_redriven)
    if args.list:
        for record in records:
            _show(record, args.json)
        held = queue.hold_all() if queue is not None else []
        try:
            shown = {letter.message_id: letter for letter in held}  # a redelivered page repeats messages
            for letter in shown.values():
                _show(letter.record(), args.json)
        finally:
            if queue is not None:
                queue.release(held)
        print(f"{len(records)} dead event(s) in Firestore, {len(shown)} message(s) in the dead-letter subscription",
              file=sys.stderr)  # fmt: skip
        return 0

    failed = 0
    stuck = [r for r in records if not r.get("redrivable")]
    records = [r for r in records if r.get("redrivable")]
    for record in stuck:
        print(f"skipped {record['id']}: {record.get('kind')} records can not be re-driven", file=sys.stderr)
    if args.direct:
        for record_id, outcome in sender.redrive_direct(records):
            failed += outcome.kind not in (Kind.SENT, Kind.DUPLICATE)
            print(f"{outcome.kind:9} {record_id} {outcome.reason}")
    elif records:
        if publisher is None:
            from shared.infra.pubsub import EventPublisher, make_publisher_client

            publisher = EventPublisher(make_publisher_client(), settings.project, topic)
        for record_id, message_id in redrive_via_pubsub(claims, records, publisher):
            print(f"published {record_id} as message {message_id}")

    republished = 0
    if queue is not None:
        event_ids = set(args.event_id or ())
        republished, letters_failed = redrive_dead_letters(
            queue, lambda letter: not event_ids or letter.ids.get("event_id") in event_ids, print
        )
        failed += letters_failed
    if args.event_id and not records and not republished:
        print(f"no dead event with event id {', '.join(args.event_id)}", file=sys.stderr)
        return 1
    print(f"{len(records)} Firestore record(s) and {republished} dead-letter message(s) re-driven", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    from shared.infra.localenv import prepare

    # The running `make run` stack's variables when none are exported; else one line on what Google Cloud needs.
    prepare("make redrive", ("GOOGLE_CLOUD_PROJECT",))
    sys.exit(main())

"""Inspect and re-drive dead events once their cause is fixed (a token rotated, a bug fixed).

Usage (from the repository root, with the sender's environment)::

    python -m functions.sender.redrive --list              # dead events, newest first
    python -m functions.sender.redrive --all               # republish every dead event to PUBSUB_TOPIC
    python -m functions.sender.redrive --event-id ID ...   # only these event ids
    python -m functions.sender.redrive --all --direct      # send from here instead of through Pub/Sub

Re-driven events carry ``source="redrive"`` and go through the same claims as
any event, so an event already delivered is not sent twice. The dead record
is marked ``redriven`` when republished and deleted by the sender once the
event is delivered; if TikTok refuses it again it is dead again, with the new
reason. Malformed messages are listed but can not be re-driven (their bytes
were not kept). Exit status: 0 done, 1 some events failed again, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from shared.config import ConfigError, ReceiverSettings, SenderSettings
from shared.delivery import DUPLICATE, SENT, ClaimStore, Sender, redrive_via_pubsub


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m functions.sender.redrive", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list dead events and exit")
    what.add_argument("--all", action="store_true", help="re-drive every dead event")
    what.add_argument("--event-id", action="append", metavar="ID", help="re-drive this event id (repeatable)")
    parser.add_argument("--direct", action="store_true", help="send to TikTok from here, not through Pub/Sub")
    parser.add_argument("--topic", help="Pub/Sub topic to republish to (default: $PUBSUB_TOPIC)")
    parser.add_argument("--include-redriven", action="store_true", help="--list: also show re-driven records")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser.parse_args(argv)


def _line(record: dict[str, Any]) -> str:
    when = record.get("dead_at")
    return (
        f"{record.get('state', '?'):9} {record.get('kind', '?'):13} code={record.get('code')} "
        f"attempts={record.get('attempts')} {record.get('pixel_code', '-')} {record.get('event', '-')} "
        f"{record.get('event_id', '-')} dead_at={when.isoformat() if when else '-'} reason={record.get('reason')}"
    )


def _show(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        fields = {k: v for k, v in record.items() if k != "envelope"}  # ids and reasons, not the event itself
        print(json.dumps(fields, default=str))
    else:
        print(_line(record))


def main(argv: Sequence[str] | None = None, sender: Sender | None = None, publisher: Any = None) -> int:
    args = _parse(argv)
    try:
        settings = SenderSettings.from_env()
        sender = sender or Sender.from_settings(settings)
        topic = args.topic or ReceiverSettings.from_env().pubsub_topic
    except ConfigError as exc:
        print(f"configuration: {exc}", file=sys.stderr)
        return 2
    claims: ClaimStore = sender.claims
    records = claims.dead_records(None if args.all or args.list else args.event_id, args.include_redriven)
    if args.list:
        for record in records:
            _show(record, args.json)
        print(f"{len(records)} dead event(s)", file=sys.stderr)
        return 0

    stuck = [r for r in records if not r.get("redrivable")]
    records = [r for r in records if r.get("redrivable")]
    for record in stuck:
        print(f"skipped {record['id']}: {record.get('kind')} records can not be re-driven", file=sys.stderr)
    if args.event_id and not records:
        print(f"no dead event with event id {', '.join(args.event_id)}", file=sys.stderr)
        return 1
    if args.direct:
        failed = 0
        for record_id, outcome in sender.redrive_direct(records):
            failed += outcome.kind not in (SENT, DUPLICATE)
            print(f"{outcome.kind:9} {record_id} {outcome.reason}")
        return 1 if failed else 0
    if publisher is None:
        from shared.pubsub import EventPublisher, make_publisher_client

        publisher = EventPublisher(make_publisher_client(), settings.project, topic)
    for record_id, message_id in redrive_via_pubsub(claims, records, publisher):
        print(f"published {record_id} as message {message_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

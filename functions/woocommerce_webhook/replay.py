"""Publish WooCommerce orders that were parked while Firestore or Pub/Sub was down.

Reads log output on standard input (the function's JSON lines, or Cloud
Logging entries as lines or one JSON array) and replays every record whose
``outcome`` is ``parked``; other lines are skipped. Safe to run twice: order
records are claimed again, envelopes are deduplicated by the sender's claim and
by TikTok on their event_id. Uses the function's settings from the environment
(``GOOGLE_CLOUD_PROJECT``, ``PUBSUB_TOPIC``; for order records also the site,
pixel and secret settings), or from the running ``make run`` stack when nothing
is exported (:mod:`shared.infra.localenv`). Prints one JSON line per record; exits 1 if any
record could not be replayed (run it again later with the same input)::

    gcloud logging read 'jsonPayload.outcome="parked"' --freshness=7d --format=json \\
        | python -m functions.woocommerce_webhook.replay
    python -m functions.woocommerce_webhook.replay --dry-run < parked.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.config import ConfigError
from shared.infra import localenv
from shared.outcome import Kind
from shared.receive import woocommerce


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="list the parked records, publish nothing")
    args = parser.parse_args(argv)
    try:
        records = list(woocommerce.parked_records(sys.stdin.read()))
    except ValueError as exc:
        print(json.dumps({"outcome": "failed", "error": str(exc)[:300]}))
        return 2
    if args.dry_run:
        for record in records:
            print(json.dumps({"kind": record.get("kind"), "event_id": woocommerce.record_event_id(record)}))
        return 0
    # The running `make run` stack's variables when none are exported; else one line on what Google Cloud needs.
    localenv.prepare("replay", ("GOOGLE_CLOUD_PROJECT",))
    try:
        runtime = woocommerce.Runtime.from_env(require_tenants=False)
    except ConfigError as exc:
        print(json.dumps({"outcome": "failed", "error": f"configuration: {exc}"}))
        return 2
    failed = 0
    for record in records:
        try:
            outcome = woocommerce.replay(record, runtime)
        except Exception as exc:
            failed += 1
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            print(json.dumps({"outcome": "failed", "event_id": woocommerce.record_event_id(record), "error": error}))
            continue
        outcome.log(replayed=True)
        failed += outcome.kind == Kind.PARKED
    print(json.dumps({"records": len(records), "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

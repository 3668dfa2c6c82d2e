"""The reconciliation report: records to one outcome per event, bounded reads, one-line errors."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from shared import report
from shared.infra.store import DAY_FIELD, DEAD_EVENTS, EVENT_CLAIMS, ORDER_EVENTS, day_of
from shared.receive.orders import block_purchase
from tests.unit.test_report import run_cli, shop_id


def test_the_report_reads_a_real_tombstone_from_firestore(store):
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    assert block_purchase(store, "CPIX", shop_id(9), source="shopify", shop="s.myshopify.com", order_ref="r")
    built = report.build(report.Reader(store.client, store.prefix), start, start + dt.timedelta(hours=1), None)
    assert built["documents_read"] == 1 and not built["truncated"]
    assert built["sources"]["shopify"]["outcomes"]["skipped"] == 1
    assert built["sources"]["shopify"]["outcomes"]["pending"] == 0
    assert built["sources"]["shopify"]["skipped_by_rule"] == {"cancelled": 1}


def _seed(store: Any, collection: str, count: int, field: str, start: dt.datetime) -> None:
    for n in range(count):
        store.collection(collection).document(f"d{n}").set(
            {
                "event_id": f"e-{collection}-{n}",
                "state": "sent",
                "source": "collect",
                field: start + dt.timedelta(minutes=n),
                DAY_FIELD: day_of(start + dt.timedelta(minutes=n)),  # as every claim and record is written
            }  # fmt: skip
        )


def test_reads_are_paged_bounded_and_counted(store):
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    _seed(store, EVENT_CLAIMS, 7, "created_at", start)
    _seed(store, DEAD_EVENTS, 2, "dead_at", start - dt.timedelta(days=2))  # outside the window
    reader = report.Reader(store.client, store.prefix, page_size=3)
    built = report.build(reader, start, start + dt.timedelta(minutes=6), None)
    # Claims are selected by their day and filtered here: all 7 are read, minute 6 (the open end) is not counted.
    assert built["documents_read"] == 7 and not built["truncated"]
    assert built["sources"]["collect"]["outcomes"]["sent"] == 6

    bounded = report.Reader(store.client, store.prefix, page_size=3, max_documents=4)
    built = report.build(bounded, start, start + dt.timedelta(hours=1), None)
    assert built["documents_read"] == 4 and built["truncated"]
    assert list(store.collection(ORDER_EVENTS).limit(1).stream()) == []


def test_the_cli_prints_json_against_the_emulator(store, emulators):
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30)
    _seed(store, EVENT_CLAIMS, 2, "created_at", start)
    done = run_cli("--since", "1h", "--json", **emulators.env, FIRESTORE_COLLECTION_PREFIX=store.prefix)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["documents_read"] == 2 and printed["sources"]["collect"]["outcomes"]["sent"] == 2

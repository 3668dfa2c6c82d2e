"""`make report` end to end: a known mix of orders through the running stack, then exactly its counts.

The mix: a consented Shopify order delivered twice, a Shopify order TikTok
refuses for good (the sandbox's ``fail_event_ids``), a Shopify test order, a
consented Shopify order cancelled before its ``orders/paid`` (the
cancellation's tombstone on the Purchase's sender claim), a consented
WooCommerce order and one nobody granted consent for. The report
runs as the operator runs it (a subprocess that finds the stack through its
``.run/stack.json`` record) over a window that holds only this test's records.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from shared import report
from shared.infra.localenv import write_stack
from shared.receive.orders import JOIN_SHOPIFY_CHECKOUT
from tests.emulator.test_shopify_webhook import new_order
from tests.helpers import ROOT, sandbox_events, wait_for_sandbox_events, wait_until
from tests.stack.test_shopify_stack import deliver, purchase_id
from tests.stack.test_shopify_stack import grant as shopify_grant
from tests.stack.test_woocommerce_stack import fresh_order, post
from tests.stack.test_woocommerce_stack import grant as woo_grant
from tests.stack.test_woocommerce_stack import purchase_id as woo_purchase_id

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(own_stack: Any) -> Any:
    """The report counts everything in the stack's collections: events other tests left in flight must not count."""
    return own_stack


def keys_of(user: dict[str, Any]) -> set[str]:
    """The match keys of a ``user`` as the sandbox received it (what TikTok would see)."""
    keys = {k for k in report.match_keys.KEYS if k != "ip_user_agent" and user.get(k)}
    return keys | ({"ip_user_agent"} if user.get("ip") and user.get("user_agent") else set())


def shares(received: list[dict[str, Any]]) -> dict[str, float]:
    return {k: sum(k in keys_of(e["user"]) for e in received) / len(received) for k in report.match_keys.KEYS}


@pytest.fixture
def refuse(stack: Any):
    url = stack.url("sandbox") + "/sandbox/faults"

    def set_refused(*event_ids: str) -> None:
        httpx.post(url, json={"fail_event_ids": list(event_ids)}, timeout=5).raise_for_status()

    yield set_refused
    httpx.delete(url, timeout=5).raise_for_status()


def test_the_report_gives_exactly_the_counts_of_a_known_mix(stack, stack_store, refuse, tmp_path):
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    sandbox = stack.url("sandbox")
    paid, refused, test_order, cancelled = new_order(), new_order(), new_order(test=True), new_order()
    for order in (paid, refused, test_order, cancelled):
        shopify_grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"], ttclid="E.C.P.report")
    woo_paid, woo_withheld = fresh_order("processing"), fresh_order("processing")
    woo_grant(stack, stack_store, woo_paid)  # no ttclid: the click came from nowhere we know
    refuse(purchase_id(refused))

    with httpx.Client(timeout=30) as http:
        cancellation = dict(cancelled, cancelled_at=cancelled["updated_at"])
        answers = [deliver(http, stack, cancellation, "orders/cancelled").json()["outcome"]]
        answers += [deliver(http, stack, order).json()["outcome"] for order in (cancelled, paid, paid, refused,
                                                                                   test_order)]  # fmt: skip
        answers += [post(http, stack, order).json()["outcome"] for order in (woo_paid, woo_withheld)]
    # The cancelled order's orders/paid and the second delivery of ``paid`` are published too: the sender
    # skips the first (its tombstone) and answers the second duplicate; the report counts each once (below).
    assert answers == ["recorded", "published", "published", "published", "published", "skipped", "published",
                       "withheld_consent"]  # fmt: skip

    [shopify_sent] = wait_for_sandbox_events(sandbox, 1, event_id=purchase_id(paid))
    [woo_sent] = wait_for_sandbox_events(sandbox, 1, event_id=woo_purchase_id(stack, woo_paid))
    reader_for = lambda: report.Reader(stack_store.client, stack_store.prefix)  # noqa: E731
    wait_until(lambda: report.build(reader_for(), since, dt.datetime.now(dt.timezone.utc), ["shopify"])["sources"]
               .get("shopify", {}).get("outcomes", {}).get("dead") == 1, timeout=30)  # fmt: skip
    assert sandbox_events(sandbox, event_id=purchase_id(refused)) == []
    assert sandbox_events(sandbox, event_id=purchase_id(cancelled)) == []

    stack_file = tmp_path / "stack.json"
    write_stack(stack_file, stack.settings, {}, pid=os.getpid())
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FIRESTORE_", "PUBSUB_", "GOOGLE_"))}
    until = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)).isoformat()
    done = subprocess.run(  # noqa: S603 (our own module, as `make report` runs it)
        [sys.executable, "-m", "shared.report", "--since", since.isoformat(), "--until", until,
         "--source", "shopify,woocommerce", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**clean, "LOCAL_STACK_FILE": str(stack_file)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    print(done.stdout)  # the note quotes it

    sources = printed["sources"]
    assert set(sources) == {"shopify", "woocommerce"}
    assert sources["shopify"]["outcomes"] == {"received": 4, "sent": 1, "withheld_consent": 0, "skipped": 2,
                                              "dead": 1, "pending": 0}  # fmt: skip
    assert sources["shopify"]["skipped_by_rule"] == {"test_order": 1, "cancelled": 1}
    assert sources["shopify"]["dead_by_code"] == {"40002": 1}
    assert sources["woocommerce"]["outcomes"] == {"received": 2, "sent": 1, "withheld_consent": 1, "skipped": 0,
                                                  "dead": 0, "pending": 0}  # fmt: skip
    # Shares of what TikTok received, worked out from the sandbox's copy of each event.
    assert sources["shopify"]["match_keys"] == shares([shopify_sent])
    assert sources["woocommerce"]["match_keys"] == shares([woo_sent])
    assert sources["shopify"]["match_keys"]["ttclid"] == 1.0 and sources["woocommerce"]["match_keys"]["ttclid"] == 0.0
    assert sources["woocommerce"]["match_keys"]["email"] == sources["woocommerce"]["match_keys"]["ip_user_agent"] == 1
    expected_score = report.match_keys.score(keys_of(shopify_sent["user"]))
    assert sources["shopify"]["coverage_score"] == expected_score
    # Exactly: two outcome records (the test order, the withheld order), the cancellation's own record,
    # two sender claims (the sent Purchases), the tombstone and one dead record. Receivers no longer
    # write order claims.
    assert printed["documents_read"] == 7 and not printed["truncated"]
    assert sandbox_events(sandbox, event_id=purchase_id(cancelled)) == []

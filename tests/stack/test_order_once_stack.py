"""An order is sent once in its life, through the running stack, counted at the sandbox.

WooCommerce re-sends ``order.updated`` for an order's whole life. Once the sender's
claim on the Purchase (``event_claims``) is gone, as Firestore's TTL policy removes
it, only the order window (ORDER_MAX_EVENT_AGE_DAYS, by payment time) keeps a later
delivery from being a second Purchase. The functions compare an order's
``date_paid_gmt`` against their own clock, so "delivered again N days after payment"
is simulated by moving the signed body's ``date_paid_gmt`` and ``date_created_gmt``
back N days, same order id.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
import pytest

from shared.domain.models import Envelope
from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS, OUTCOME_RECORD, doc_id
from tests.helpers import sandbox_events, wait_for_sandbox_events, wait_until
from tests.stack.test_woocommerce_stack import events_once_a_later_order_arrived, fresh_order, grant, post, purchase_id

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=30) as client:
        yield client


def days_back(text: str, days: int) -> str:
    moment = dt.datetime.fromisoformat(text) - dt.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def sender_counter(stack: Any, name: str) -> int:
    return httpx.get(stack.url("sender") + "/metrics", timeout=5).json()["counters"].get(name, 0)


def test_a_paid_order_delivered_again_10_30_and_90_days_after_payment_is_one_purchase(http, stack, stack_store):
    order = fresh_order("processing")
    grant(stack, stack_store, order)
    event_id = purchase_id(stack, order)
    claim = (stack.settings["TIKTOK_PIXEL_CODE"], "Purchase", event_id)
    assert post(http, stack, order).json()["outcome"] == "published"
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)
    wait_until(lambda: (stack_store.get(EVENT_CLAIMS, claim) or {}).get("state") == "sent")

    # The claim expires: Firestore's TTL policy deletes the document, as here.
    stack_store.collection(EVENT_CLAIMS).document(doc_id(*claim)).delete()
    assert stack_store.get(EVENT_CLAIMS, claim) is None

    for days in (10, 30, 90):
        later = {**order, "status": "completed", "date_paid_gmt": days_back(order["date_paid_gmt"], days),
                 "date_created_gmt": days_back(order["date_created_gmt"], days)}  # fmt: skip
        answer = post(http, stack, later)
        assert answer.status_code == 200, days  # WooCommerce must not deliver it again
        assert answer.json()["outcome"] == "skipped", (days, answer.json())
        assert f"{days}.0 days old" in answer.json()["reason"] and "ORDER_MAX_EVENT_AGE_DAYS" in answer.json()["reason"]

    assert len(events_once_a_later_order_arrived(http, stack, stack_store, event_id)) == 1
    assert stack_store.get(EVENT_CLAIMS, claim) is None  # nothing reached the sender's claim again
    record = stack_store.get(ORDER_EVENTS, (OUTCOME_RECORD, event_id))
    assert record is not None and (record["outcome"], record["rule"]) == ("skipped", "outside_window")


def test_an_old_order_envelope_published_straight_on_the_topic_reaches_nothing_and_is_acknowledged(
    stack, stack_store, publish
):
    """The Pub/Sub path (Shopify over Pub/Sub, a replay or re-drive by hand): the sender is the choke point."""
    order = fresh_order("processing")
    event_id = purchase_id(stack, order)
    envelope = Envelope(source="woocommerce", pixel_code=stack.settings["TIKTOK_PIXEL_CODE"], event="Purchase",
                        event_id=event_id, event_time=int(time.time()) - 30 * 86_400, consent="granted",
                        properties={"currency": "USD", "value": 29.35, "order_id": str(order["id"])})  # fmt: skip
    before = sender_counter(stack, "skipped.outside_window")
    publish(envelope)
    record = wait_until(lambda: stack_store.get(ORDER_EVENTS, (OUTCOME_RECORD, event_id)), timeout=30)
    assert (record["outcome"], record["rule"]) == ("skipped", "outside_window")
    assert sender_counter(stack, "skipped.outside_window") == before + 1
    # Acknowledged with its 200: a message answered 503 comes back within seconds (the stack's backoff),
    # and each time it would be counted again. None is, and nothing was claimed or sent.
    time.sleep(6)
    assert sender_counter(stack, "skipped.outside_window") == before + 1
    assert stack_store.get(EVENT_CLAIMS, (stack.settings["TIKTOK_PIXEL_CODE"], "Purchase", event_id)) is None
    assert sandbox_events(stack.url("sandbox"), event_id=event_id) == []

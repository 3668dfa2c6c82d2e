"""Shopify over Pub/Sub end to end: a message in Shopify's format on the local Shopify topic -> the TikTok sandbox.

The session's local stack (conftest's ``stack``) plus the Shopify delivery
topic exactly as ``make run`` creates it (``localstack.create_shopify_topology``:
topic, push subscription to the ``shopify_pubsub`` entry point, dead letters).
Messages are published the way Shopify publishes them: the body as data, the
``X-Shopify-*`` headers as attributes, no HMAC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from scripts import localstack
from shared.config import DEFAULT_SHOPIFY_API_VERSION
from shared.infra.store import ORDER_EVENTS
from shared.receive.orders import JOIN_SHOPIFY_CHECKOUT
from tests.emulator.test_shopify_webhook import big_id, new_order, recent
from tests.helpers import load_fixture, sandbox_events, wait_for_sandbox_events, wait_until
from tests.stack.test_shopify_stack import claim_state, deliver, grant, purchase_id, sent_after_sentinel
from tests.unit.test_shopify_mapping import SHOP

pytestmark = pytest.mark.stack


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def shopify_topic(stack) -> dict[str, str]:
    name = f"shopify-webhooks-{uuid.uuid4().hex[:8]}"
    return localstack.create_shopify_topology(stack.emulators.project, name, stack.url("shopify_pubsub") + "/")


@pytest.fixture(scope="module")
def publisher():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


def publish(publisher, shopify_topic, payload: dict | bytes, topic: str | None = "orders/paid",
            shop: str | None = SHOP) -> str:  # fmt: skip
    """Publish as Shopify does; returns the X-Shopify-Event-Id (logged as delivery_id, unique unlike message ids)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    event_id = str(uuid.uuid4())
    attributes = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    sent = {k: v for k, v in attributes.items() if v is not None}
    publisher.publish(shopify_topic["topic"], data, **sent).result(timeout=10)
    return event_id


def logged(event_id: str) -> list[dict[str, Any]]:
    """What the stack's shopify_pubsub process logged for the message of one event id."""
    path = localstack.RUN_DIR / "shopify_pubsub.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    entries = (_json(line) for line in lines if event_id in line)
    return [entry for entry in entries if entry is not None and entry.get("delivery_id") == event_id]


def _json(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def test_a_fixture_order_published_on_the_shopify_topic_reaches_the_sandbox_once(
    client, stack, stack_store, shopify_topic, publisher
):
    processed = int(time.time()) - 600
    stamp = dt.datetime.fromtimestamp(processed, dt.timezone.utc).isoformat()
    order = new_order(
        processed_at=stamp, created_at=stamp, updated_at=stamp,
        note_attributes=[{"name": "_ttclid", "value": "E.C.P.pubsub-stack"}],
        client_details={"browser_ip": "203.0.113.24", "user_agent": "Mozilla/5.0 PubSubStack/1"},
    )  # fmt: skip
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    event_id = publish(publisher, shopify_topic, order)

    [received] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(order))
    assert received["event_source_id"] == stack.settings["TIKTOK_PIXEL_CODE"]
    assert received["event"] == "Purchase" and received["event_time"] == processed
    assert received["user"]["ttclid"] == "E.C.P.pubsub-stack"
    assert received["user"]["email"] == [sha("jon@example.com"), sha("john@example.com")]
    assert received["user"]["user_agent"] == "Mozilla/5.0 PubSubStack/1"
    assert received["properties"]["order_id"] == str(order["id"])
    assert (received["properties"]["currency"], received["properties"]["value"]) == ("USD", 404.95)
    [line] = wait_until(lambda: logged(event_id), timeout=10)
    assert (line["outcome"], line["via"]) == ("published", "pubsub")

    # The same order over HTTPS (Shopify retrying a subscription of the other kind) and a redelivered message:
    # both published again, and the sender's claim on the event_id, already "sent", answers them "duplicate".
    assert wait_until(lambda: claim_state(stack, stack_store, order) == "sent", timeout=10)
    assert deliver(client, stack, order).json()["outcome"] == "published"
    again = publish(publisher, shopify_topic, order)
    assert wait_until(lambda: logged(again), timeout=15)[0]["outcome"] == "published"
    assert len(sent_after_sentinel(client, stack, stack_store, purchase_id(order))) == 1
    assert wait_until(lambda: claim_state(stack, stack_store, order) == "sent", timeout=10)


def test_the_production_fixture_order_arrives_like_an_https_one(client, stack, stack_store, shopify_topic, publisher):
    order = load_fixture("shopify/orders_2024-04_anonymized_production.json")
    order_id = big_id()
    order.update(id=order_id, admin_graphql_api_id=f"gid://shopify/Order/{order_id}", test=False,
                 financial_status="paid", cancelled_at=None, checkout_token=f"chk-{uuid.uuid4().hex}",
                 created_at=recent(120), processed_at=recent(120), updated_at=recent(60))  # fmt: skip
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    publish(publisher, shopify_topic, order)
    [received] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(order))
    assert received["properties"]["order_id"] == str(order_id)


@pytest.mark.parametrize(
    ("case", "reason"),
    [("unknown-shop", "unknown shop"), ("no-topic", "X-Shopify-Topic"), ("malformed", "not valid JSON")],
)
def test_a_message_that_can_never_be_processed_is_acknowledged_recorded_and_never_reaches_tiktok(
    client, stack, stack_store, shopify_topic, publisher, case, reason
):
    order = new_order()
    grant(stack, stack_store, JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    if case == "unknown-shop":
        event_id = publish(publisher, shopify_topic, order, shop="stranger.myshopify.com")
    elif case == "no-topic":
        event_id = publish(publisher, shopify_topic, order, topic=None)
    else:
        event_id = publish(publisher, shopify_topic, json.dumps(order).encode()[:-7])
    # Recorded: one line with the reason, answered 200, so Pub/Sub acknowledged it and never redelivers it.
    [line] = wait_until(lambda: logged(event_id), timeout=15)
    assert line["outcome"] == "rejected" and reason in line["message"] and line.get("status", 200) == 200
    time.sleep(3)  # the emulator redelivers a refused push after about a second
    assert len(logged(event_id)) == 1, "the message was redelivered: it was not acknowledged"
    assert stack_store.get(ORDER_EVENTS, ("shopify", SHOP, str(order["id"]), "Purchase")) is None
    assert sent_after_sentinel(client, stack, stack_store, purchase_id(order)) == []
    assert sandbox_events(stack.url("sandbox"), event_id=purchase_id(order)) == []
    assert claim_state(stack, stack_store, order) is None  # nor did anything reach the sender

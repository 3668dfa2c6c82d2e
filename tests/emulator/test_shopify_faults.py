"""No lost order: the Shopify webhook under slow Firestore, dead instances and concurrent duplicates.

Against the real Firestore and Pub/Sub emulators. The real Store and
publisher are wrapped so that one chosen call outlives the delivery's budget
after it landed, or so that the instance "dies" at a chosen call: that call
fails (after or instead of taking effect) and so does every later one, the
clean-up included. Shopify then redelivers the same signed bytes, as it does
for any non-2xx or unanswered delivery, until it gets a 200.

The receiver claims nothing: every delivery of an order event is published,
and the sender's claim on its deterministic event_id makes them one Purchase
(shared.receive.orders). So the messages on the topic are counted first (none lost),
then pushed through the real sender (``downstream``), and the Purchases are
counted at TikTok (the sandbox): exactly one, or none after a cancellation.
Re-publishing is the price of never losing one: when the instance dies after
the publish landed, the redelivery cannot tell and publishes the same event
again, under the same ``event_id``; that case expects two identical messages
and still one Purchase at TikTok.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.infra.http import Reply
from shared.infra.pubsub import EventPublisher
from shared.infra.store import EVENT_CLAIMS, WEBHOOK_DELIVERIES
from shared.receive.orders import JOIN_SHOPIFY_CHECKOUT
from shared.receive.shopify.handler import handle
from shared.receive.shopify.request import IO_SECONDS, Delivery
from shared.receive.shopify.runtime import Runtime
from shared.receive.shopify.settings import ShopifySettings
from tests.conftest import decode_message
from tests.emulator.test_shopify_webhook import GRANTED, HOUR, PIXEL, SECRET, new_order, settings_env
from tests.helpers import shopify_signature
from tests.unit.test_shopify_mapping import SHOP

# The calls one orders/paid delivery makes, in order, when nothing fails.
PURCHASE_STEPS = ["store.find_click_context", "publisher.publish"]
# (step, mode) where the publish landed when the instance dies.
REPUBLISHED = {("publisher.publish", "after")}


class Died(Exception):
    """The instance is gone: this call and every later one fail."""


class Script:
    """Counts the calls of one attempt across the store and the publisher, and fails them as told."""

    def __init__(self, fail_at: int | None = None, mode: str = "instead", slow_at: int | None = None,
                 slow_seconds: float = 0.0) -> None:  # fmt: skip
        self.fail_at, self.mode = fail_at, mode
        self.slow_at, self.slow_seconds = slow_at, slow_seconds
        self.calls: list[str] = []

    def call(self, name: str, run: Callable[[], Any]) -> Any:
        index = len(self.calls)
        self.calls.append(name)
        if self.fail_at is not None and index >= self.fail_at:
            if index == self.fail_at and self.mode == "after":
                run()
            raise Died(f"instance died at call {index} ({name})")
        result = run()
        if index == self.slow_at:
            time.sleep(self.slow_seconds)  # landed, but the answer comes after the delivery's budget
        return result


class Scripted:
    """``target`` (the real Store or publisher) with every method call going through ``script``."""

    def __init__(self, target: Any, kind: str, script: Script) -> None:
        self._target, self._kind, self._script = target, kind, script

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute
        return lambda *args, **kwargs: self._script.call(f"{self._kind}.{name}", lambda: attribute(*args, **kwargs))


class Shopify:
    """Delivers signed bodies to :func:`shared.receive.shopify.handler.handle` with a fresh runtime per attempt."""

    def __init__(self, emulators, collection_prefix, topic, store, pubsub_clients) -> None:
        settings = ShopifySettings.from_env(settings_env(emulators, collection_prefix, topic.topic))
        self.tenants = settings.tenants()
        self.shops = settings.shops(self.tenants)
        self.store, self.topic = store, topic
        self.publisher = EventPublisher(pubsub_clients[0], emulators.project, topic.topic)

    def attempt(self, body: bytes, topic: str = "orders/paid", *, delivery_id: str = "w-1",
                script: Script | None = None, io_seconds: float = IO_SECONDS) -> Reply:  # fmt: skip
        script = script or Script()
        delivery = Delivery.from_headers(
            {"X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Webhook-Id": delivery_id,
             "X-Shopify-Hmac-Sha256": shopify_signature(body, SECRET)}
        )  # fmt: skip
        runtime = Runtime(
            self.tenants, self.shops, store=Scripted(self.store, "store", script),
            publisher=Scripted(self.publisher, "publisher", script), io_seconds=io_seconds,
        )  # fmt: skip
        return handle(delivery, body, runtime)

    def redeliver_until_accepted(self, body: bytes, topic: str = "orders/paid", *, delivery_id: str = "w-1",
                                 within: float = 15.0) -> list[Reply]:  # fmt: skip
        """Shopify's retries of the same delivery (compressed in time) until one gets a 2xx."""
        replies: list[Reply] = []
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            replies.append(self.attempt(body, topic, delivery_id=delivery_id))
            if replies[-1].status == 200:
                return replies
            time.sleep(0.3)
        raise AssertionError(f"never accepted: {[(r.status, r.body) for r in replies]}")

    def published(self, expected: int) -> list[Any]:
        """The messages on the topic: exactly ``expected`` of them."""
        messages = self.topic.pull_all(expected)
        assert len(messages) == expected, f"{len(messages)} messages on the topic, expected {expected}"
        assert self.topic.pull(timeout=1.0) == [], "more messages than expected on the topic"
        return messages

    def purchases(self, expected: int) -> list[dict]:
        return [decode_message(m) for m in self.published(expected)]


@pytest.fixture
def shop(emulators, collection_prefix, topic, store, pubsub_clients) -> Shopify:
    return Shopify(emulators, collection_prefix, topic, store, pubsub_clients)


def consented_order(store) -> tuple[dict, bytes]:
    order = new_order()
    store.put_click_context(PIXEL, [(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])], {"consent": GRANTED}, HOUR)
    return order, json.dumps(order).encode()


def purchase_id(order: dict) -> str:
    return f"shopify:{SHOP}:order:{order['id']}:Purchase"


def test_a_healthy_delivery_makes_exactly_the_calls_the_fault_tests_cut_between(shop):
    order, body = consented_order(shop.store)
    script = Script()
    assert shop.attempt(body, script=script).body["outcome"] == "published"
    assert script.calls == PURCHASE_STEPS  # a new step must be added to the fault tests below
    assert shop.store.get(WEBHOOK_DELIVERIES, ("shopify", SHOP, "orders/paid", "w-1")) is None  # no delivery claim
    assert [m["event_id"] for m in shop.purchases(1)] == [purchase_id(order)]


@pytest.mark.parametrize("mode", ["instead", "after"])
@pytest.mark.parametrize("step", range(len(PURCHASE_STEPS)), ids=PURCHASE_STEPS)
def test_an_instance_dying_at_any_step_loses_no_purchase(shop, downstream, step, mode):
    order, body = consented_order(shop.store)
    script = Script(fail_at=step, mode=mode)
    shop.attempt(body, script=script)  # answered or not: Shopify may retry either way
    assert script.calls[: step + 1] == PURCHASE_STEPS[: step + 1]  # died there (its clean-up died with it)
    replies = shop.redeliver_until_accepted(body)
    assert replies[-1].body["outcome"] == "published"
    expected = 2 if (PURCHASE_STEPS[step], mode) in REPUBLISHED else 1
    published = shop.published(expected)
    assert [decode_message(m)["event_id"] for m in published] == [purchase_id(order)] * expected
    assert sorted(downstream.deliver(published)) == ["duplicate"] * (expected - 1) + ["sent"]
    assert [e["event_id"] for e in downstream.events()] == [purchase_id(order)]
    assert shop.store.get(EVENT_CLAIMS, (PIXEL, "Purchase", purchase_id(order)))["state"] == "sent"
    # Settled: any later redelivery is a duplicate and sends nothing.
    assert shop.attempt(body, delivery_id="w-late").body["outcome"] == "published"
    assert downstream.deliver(shop.published(1)) == ["duplicate"]
    assert len(downstream.events()) == 1


@pytest.mark.parametrize("step", PURCHASE_STEPS)
def test_a_call_that_lands_after_the_budget_loses_no_purchase(shop, downstream, step):
    order, body = consented_order(shop.store)
    script = Script(slow_at=PURCHASE_STEPS.index(step), slow_seconds=1.2)
    first = shop.attempt(body, script=script, io_seconds=0.8)
    assert first.status == 503
    time.sleep(1.5)  # the slow call has landed by now, as a paused Firestore's writes do
    replies = shop.redeliver_until_accepted(body)
    assert replies[-1].body["outcome"] == "published"
    # A publish that landed late was published all the same: the redelivery's copy is the same event.
    expected = 2 if step == "publisher.publish" else 1
    published = shop.published(expected)
    assert [decode_message(m)["event_id"] for m in published] == [purchase_id(order)] * expected
    downstream.deliver(published)
    assert [e["event_id"] for e in downstream.events()] == [purchase_id(order)]


def test_orders_create_and_orders_paid_with_twenty_concurrent_duplicates_each_give_one_purchase(shop, downstream):
    order, body = consented_order(shop.store)
    deliveries = [("orders/create", "w-create"), ("orders/paid", "w-paid")] * 20
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda d: shop.attempt(body, d[0], delivery_id=d[1]), deliveries))
    retried = [shop.redeliver_until_accepted(body, t, delivery_id=i)[-1] for (t, i), r in zip(deliveries, replies,
               strict=True) if r.status != 200]  # fmt: skip
    outcomes = sorted(r.body["outcome"] for r in replies if r.status == 200) + [r.body["outcome"] for r in retried]
    assert outcomes == ["published"] * 40
    published = shop.published(40 + len(retried))
    assert sorted(downstream.deliver(published)) == ["duplicate"] * (39 + len(retried)) + ["sent"]
    assert [e["event_id"] for e in downstream.events()] == [purchase_id(order)]


def test_a_cancellation_before_payment_means_no_purchase_even_under_concurrent_duplicates(shop, downstream):
    order, body = consented_order(shop.store)
    cancelled = json.dumps(dict(order, cancelled_at=order["updated_at"])).encode()
    with ThreadPoolExecutor(max_workers=10) as pool:
        replies = list(pool.map(lambda _: shop.attempt(cancelled, "orders/cancelled", delivery_id="w-c"), range(10)))
    assert sorted(r.body["outcome"] for r in replies) == ["duplicate"] * 9 + ["recorded"]
    with ThreadPoolExecutor(max_workers=20) as pool:
        late = list(pool.map(lambda _: shop.attempt(body, "orders/paid", delivery_id="w-p"), range(20)))
    assert {r.status for r in late} == {200}
    assert set(downstream.deliver(shop.published(20))) == {"skipped"}
    assert downstream.events() == []


@pytest.mark.parametrize("mode", ["instead", "after"])
@pytest.mark.parametrize("step", [0, 1], ids=["blocking the Purchase", "recording the cancellation"])
def test_an_instance_dying_while_recording_a_cancellation_still_blocks_the_purchase(shop, downstream, step, mode):
    order, body = consented_order(shop.store)
    cancelled = json.dumps(dict(order, cancelled_at=order["updated_at"])).encode()
    script = Script(fail_at=step, mode=mode)
    assert shop.attempt(cancelled, "orders/cancelled", script=script).status == 503
    assert script.calls[-1] == "store.claim_once"
    [accepted] = shop.redeliver_until_accepted(cancelled, "orders/cancelled")
    assert accepted.body["outcome"] == ("duplicate" if (step, mode) == (1, "after") else "recorded")
    if accepted.body["outcome"] == "recorded":
        assert accepted.body["reason"].startswith("order cancelled before any Purchase")
    late = shop.attempt(body, "orders/paid", delivery_id=f"w-{uuid.uuid4().hex[:6]}")
    assert late.status == 200
    assert downstream.deliver(shop.published(1)) == ["skipped"]
    assert downstream.events() == []

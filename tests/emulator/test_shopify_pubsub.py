"""Shopify webhooks over Pub/Sub, in-process: the ``shopify_pubsub`` entry point against the real emulators.

The entry point is driven through functions-framework's test client with the
JSON a push subscription POSTs (conftest's ``push_body``), carrying Shopify's
attributes. It must end in the same verified-delivery path as the HTTPS
webhook: every delivery of an order event is published, over either path, and
the sender's claim on the deterministic event_id makes them one Purchase
(counted at TikTok through conftest's ``downstream``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import functions_framework
import pytest

from shared.infra.pubsub import EventPublisher, make_publisher_client
from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS, Store, make_client
from shared.receive.orders import JOIN_SHOPIFY_CHECKOUT
from shared.receive.shopify.pubsub import PushMessage, handle_push
from shared.receive.shopify.runtime import Runtime
from shared.receive.shopify.settings import ShopifySettings
from tests.conftest import push_body
from tests.emulator.test_shopify_webhook import PIXEL, Webhook, new_order, settings_env
from tests.unit.test_shopify_mapping import SHOP
from tests.unit.test_shopify_pubsub_entry import MAIN, attributes


class Pushes(Webhook):
    """The Pub/Sub entry point, plus the HTTPS one on the same emulators (Webhook.post)."""

    pubsub: Any = None

    def push(self, payload: dict | bytes, attrs: dict[str, str] | None = None, message_id: str | None = None):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        body = push_body(data, message_id, attributes() if attrs is None else attrs)
        return self.pubsub.post("/", json=body)

    def nothing_done(self) -> bool:
        """No order record and nothing published (the click context a test granted stays)."""
        return not self.documents(ORDER_EVENTS) and self.nothing_published()


@pytest.fixture
def pushes(monkeypatch, emulators, collection_prefix, topic, store) -> Pushes:
    for name, value in settings_env(emulators, collection_prefix, topic.topic).items():
        monkeypatch.setenv(name, value)
    https = functions_framework.create_app(target="shopify_webhook", source=MAIN)
    client = Pushes(https.test_client(), store, topic)
    client.pubsub = functions_framework.create_app(target="shopify_pubsub", source=MAIN).test_client()
    return client


def logged(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


# --- the same path as HTTPS ------------------------------------------------------------------


def test_a_pushed_paid_order_publishes_one_hashed_purchase(pushes, capsys):
    order = new_order(note_attributes=[{"name": "_ttclid", "value": "E.C.P.pubsub"}])
    pushes.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    response = pushes.push(order, message_id="m-paid")
    event_id = f"shopify:{SHOP}:order:{order['id']}:Purchase"
    assert (response.status_code, response.get_json()["outcome"]) == (200, "published")
    [envelope] = pushes.published()
    assert envelope["event_id"] == event_id and envelope["pixel_code"] == PIXEL
    assert envelope["user"]["ttclid"] == "E.C.P.pubsub"
    assert envelope["user"]["email"][0] == hashlib.sha256(b"jon@example.com").hexdigest()
    [line] = [entry for entry in logged(capsys) if entry.get("outcome") == "published"]
    assert (line["via"], line["message_id"], line["shop"]) == ("pubsub", "m-paid", SHOP)
    assert "jon@example.com" not in json.dumps(line)


def test_the_same_order_over_pubsub_and_over_https_is_one_purchase(pushes, downstream):
    order = new_order()
    pushes.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert pushes.push(order).get_json()["outcome"] == "published"
    assert pushes.post(order).get_json()["outcome"] == "published"
    assert pushes.push(order, attributes(topic="orders/create")).get_json()["outcome"] == "published"
    messages = pushes.messages(3)
    assert sorted(downstream.deliver(messages)) == ["duplicate", "duplicate", "sent"]
    assert [e["event_id"] for e in downstream.events()] == [f"shopify:{SHOP}:order:{order['id']}:Purchase"]


def test_an_order_first_sent_over_https_is_a_duplicate_when_pushed(pushes, downstream):
    order = new_order()
    pushes.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert pushes.post(order).get_json()["outcome"] == "published"
    assert downstream.deliver(pushes.messages(1)) == ["sent"]
    assert pushes.push(order).get_json()["outcome"] == "published"
    assert downstream.deliver(pushes.messages(1)) == ["duplicate"]
    assert len(downstream.events()) == 1


def test_a_redelivered_message_is_acknowledged_and_sent_once(pushes, downstream):
    """Pub/Sub's redelivery of one message: each copy is acknowledged and published, the sender sends one.

    (The receiver used to answer the copies "duplicate"; the sender's claim on
    the deterministic event_id now does.)
    """
    order = new_order()
    pushes.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    same = attributes()
    replies = [pushes.push(order, same, message_id="m-again") for _ in range(3)]
    assert [(r.status_code, r.get_json()["outcome"]) for r in replies] == [(200, "published")] * 3
    assert [downstream.deliver([m])[0] for m in pushes.messages(3)] == ["sent", "duplicate", "duplicate"]
    assert len(downstream.events()) == 1


def test_consent_and_privacy_webhooks_take_the_same_path(pushes):
    withheld = new_order()  # opt-in and no click context: nothing may be sent
    assert pushes.push(withheld).get_json()["outcome"] == "withheld_consent"
    customer_id = withheld["customer"]["id"]
    redact = {"shop_id": 1, "shop_domain": SHOP, "customer": {"id": customer_id}, "orders_to_redact": [withheld["id"]]}
    reply = pushes.push(redact, attributes(topic="customers/redact"))
    assert (reply.status_code, reply.get_json()["outcome"]) == (200, "redacted")
    assert pushes.nothing_published()


# --- refused for good: acknowledged, logged, nothing done -------------------------------------


@pytest.mark.parametrize(
    ("attrs", "data", "reason"),
    [
        (attributes(shop="other-shop.myshopify.com"), None, "unknown shop 'other-shop.myshopify.com'"),
        (attributes(shop=None), None, "without an X-Shopify-Shop-Domain attribute"),
        (attributes(topic=None), None, "without an X-Shopify-Topic attribute"),
        (attributes(), b"{not json", "body is not valid JSON"),
        (attributes(), b"[1, 2]", "expected an object"),
    ],
    ids=["unknown-shop", "no-shop", "no-topic", "not-json", "not-an-object"],
)
def test_a_message_that_can_never_be_processed_is_acknowledged_logged_and_leaves_no_trace(
    pushes, capsys, attrs, data, reason
):
    response = pushes.push(data if data is not None else new_order(), attrs, message_id="m-refused")
    assert response.status_code == 200, "any other answer has Pub/Sub redeliver the same message"
    assert response.get_json()["outcome"] == "rejected" and reason in response.get_json()["reason"]
    [line] = [entry for entry in logged(capsys) if entry.get("outcome") == "rejected"]
    assert reason in line["message"] and line["via"] == "pubsub"
    assert pushes.no_trace()


def test_message_data_that_is_not_base64_is_acknowledged_and_logged(pushes, capsys):
    body = push_body(b"{}", "m-b64", attributes())
    body["message"]["data"] = "%%% not base64 %%%"
    response = pushes.pubsub.post("/", json=body)
    assert (response.status_code, response.get_json()["outcome"]) == (200, "rejected")
    assert "not base64" in response.get_json()["reason"]
    assert pushes.no_trace()


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "JSON"), (b'{"subscription": "s"}', "message object"), (b"[]", "message object")],
    ids=["not-json", "no-message", "not-an-object"],
)
def test_a_request_that_is_not_a_push_is_refused_400(pushes, body, reason):
    response = pushes.pubsub.post("/", data=body, content_type="application/json")
    assert response.status_code == 400 and reason in response.get_json()["reason"]
    assert pushes.no_trace()


def test_a_push_beyond_the_body_limit_is_413_without_being_read(pushes, monkeypatch):
    monkeypatch.setenv("SHOPIFY_MAX_BODY_BYTES", "65536")
    app = functions_framework.create_app(target="shopify_pubsub", source=MAIN).test_client()
    huge = push_body(b"x" * 200_000, "m-huge", attributes())
    response = app.post("/", json=huge)
    assert response.status_code == 413 and "SHOPIFY_MAX_BODY_BYTES" in response.get_json()["reason"]
    assert pushes.no_trace()


def test_the_public_https_endpoint_never_takes_a_push_without_its_hmac(pushes):
    """A push-shaped request on the public endpoint is an unsigned delivery: 401, nothing done."""
    order = new_order()
    pushes.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    body = json.dumps(push_body(json.dumps(order).encode(), "m-public", attributes())).encode()
    response = pushes.client.post("/", data=body, headers={"Content-Type": "application/json", **attributes()})
    assert response.status_code == 401
    assert pushes.nothing_published()


# --- stale deliveries (X-Shopify-Triggered-At), both paths -------------------------------------


def _days_ago(days: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).isoformat().replace("+00:00", "Z")


def test_a_message_triggered_before_the_max_age_is_refused_with_its_age(pushes, capsys):
    order = new_order()
    pushes.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    response = pushes.push(order, attributes(**{"X-Shopify-Triggered-At": _days_ago(8)}))
    assert (response.status_code, response.get_json()["outcome"]) == (200, "rejected")
    assert "X-Shopify-Triggered-At" in response.get_json()["reason"]
    [line] = [entry for entry in logged(capsys) if entry.get("outcome") == "rejected"]
    assert 8 * 86400 - 60 <= line["age_seconds"] <= 8 * 86400 + 60 and line["max_age_seconds"] == 7 * 86400
    assert pushes.nothing_done()


def test_an_https_delivery_triggered_before_the_max_age_is_refused_too(pushes):
    order = new_order()
    pushes.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    response = pushes.post(order, headers={"X-Shopify-Triggered-At": _days_ago(7.5)})
    assert (response.status_code, response.get_json()["outcome"]) == (200, "rejected")
    fresh = pushes.post(order, headers={"X-Shopify-Triggered-At": _days_ago(0.1)})
    assert fresh.get_json()["outcome"] == "published", "a recent trigger time refuses nothing"
    assert len(pushes.published()) == 1


def test_the_max_age_follows_the_setting(pushes, monkeypatch):
    monkeypatch.setenv("SHOPIFY_MAX_ORDER_AGE_DAYS", "1")
    app = functions_framework.create_app(target="shopify_pubsub", source=MAIN).test_client()
    order = new_order()
    data = json.dumps(order).encode()
    stale = app.post("/", json=push_body(data, None, attributes(**{"X-Shopify-Triggered-At": _days_ago(1.5)})))
    assert stale.get_json()["outcome"] == "rejected"


def test_privacy_webhooks_are_never_refused_as_stale(pushes):
    redact = {"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 42}, "orders_to_redact": []}
    reply = pushes.push(redact, attributes(topic="customers/redact", **{"X-Shopify-Triggered-At": _days_ago(30)}))
    assert reply.get_json()["outcome"] == "redacted"


# --- transient trouble: Pub/Sub redelivers -----------------------------------------------------


def test_an_unreachable_firestore_answers_503_so_pubsub_redelivers(emulators, collection_prefix, topic):
    from tests.emulator.test_woocommerce_webhook import emulator_host_pointing_nowhere

    settings = ShopifySettings.from_env(settings_env(emulators, collection_prefix, topic.topic))
    with emulator_host_pointing_nowhere("FIRESTORE_EMULATOR_HOST"):
        unreachable = Store(make_client(emulators.project), collection_prefix)
    publisher = EventPublisher(make_publisher_client(), emulators.project, topic.topic)
    tenants = settings.tenants()
    runtime = Runtime(tenants, settings.shops(tenants), store=unreachable, publisher=publisher, io_seconds=0.5)
    data = base64.b64encode(json.dumps(new_order()).encode()).decode()
    message = PushMessage("m-down", attributes(), data)
    assert handle_push(message, runtime).status == 503


def test_a_503_push_logs_one_outcome_line_error_unavailable_at_error(pushes, monkeypatch, capsys):
    """The entry point's outcome line: what the ``error_unavailable`` alert counts (terraform/monitoring.tf)."""
    monkeypatch.setenv("PUBSUB_TOPIC", f"missing-{uuid.uuid4().hex[:8]}")
    order = new_order()
    pushes.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    capsys.readouterr()
    assert pushes.push(order, message_id="m-503").status_code == 503, "Pub/Sub redelivers a 503"
    [line] = [entry for entry in logged(capsys) if "outcome" in entry]
    assert (line["outcome"], line["severity"], line["message"]) == (
        "error_unavailable", "ERROR", "processing failed; Shopify will retry"
    )  # fmt: skip
    assert (line["via"], line["message_id"], line["shop"]) == ("pubsub", "m-503", SHOP)


def test_a_failed_publish_answers_503_and_the_redelivery_publishes_once(
    emulators, collection_prefix, topic, store, downstream
):
    settings = ShopifySettings.from_env(settings_env(emulators, collection_prefix, topic.topic))
    order = new_order()
    store.put_click_context(PIXEL, [(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])],
                            {"consent": {"marketing_allowed": True}}, dt.timedelta(hours=1))  # fmt: skip

    class Failing:
        def publish(self, envelopes):
            raise RuntimeError("events topic unavailable")

    message = PushMessage("m-fail", attributes(), base64.b64encode(json.dumps(order).encode()).decode())
    tenants, shops = settings.tenants(), settings.shops(settings.tenants())
    failing = Runtime(tenants, shops, store=store, publisher=Failing())
    assert handle_push(message, failing).status == 503
    publisher = EventPublisher(make_publisher_client(), emulators.project, topic.topic)
    working = Runtime(tenants, shops, store=store, publisher=publisher)
    reply = handle_push(message, working)
    assert (reply.status, reply.body["outcome"]) == (200, "published")
    messages = topic.pull_all(1)
    assert len(messages) == 1 and topic.pull(timeout=1.0) == []
    # Nothing left at the receiver that could swallow a later copy; the sender's claim is the order's.
    assert store.get(ORDER_EVENTS, ("shopify", SHOP, str(order["id"]), "Purchase")) is None
    assert downstream.deliver(messages) == ["sent"]
    assert store.get(EVENT_CLAIMS, (PIXEL, "Purchase", reply.body["event_id"]))["state"] == "sent"
    assert [e["event_id"] for e in downstream.events()] == [reply.body["event_id"]]


def test_health_check_answers_get(pushes):
    assert pushes.pubsub.get("/healthz").status_code == 200
    assert pushes.pubsub.put("/").status_code == 405

"""The Shopify webhook function in-process, against the real Firestore and Pub/Sub emulators.

Each test gets its own collection prefix and its own topic (conftest's ``store``
and ``topic``), runs the real ``functions/shopify_webhook/main.py`` through
functions-framework's test client, and proves what was (or was not) written to
Firestore and published to Pub/Sub.

The receiver claims no order event: every delivery of one is published, and
the sender's claim on its deterministic event_id makes them one Purchase
(shared.receive.orders). Tests of "one Purchase" therefore count every message on the
topic (none lost), push them all through the real sender (conftest's
``downstream``) and count what TikTok received.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import functions_framework
import pytest

from shared.config import DEFAULT_SHOPIFY_API_VERSION
from shared.infra.metrics import COUNTERS
from shared.infra.pubsub import EventPublisher, make_publisher_client
from shared.infra.store import (
    CLICK_CONTEXTS,
    COLLECTIONS,
    EVENT_CLAIMS,
    ORDER_EVENTS,
    WEBHOOK_DELIVERIES,
    Store,
    doc_id,
    make_client,
)
from shared.receive.orders import JOIN_SHOPIFY_CART, JOIN_SHOPIFY_CHECKOUT
from shared.receive.shopify.handler import handle
from shared.receive.shopify.request import Delivery
from shared.receive.shopify.runtime import Runtime
from shared.receive.shopify.settings import ShopifySettings
from tests.conftest import decode_message
from tests.helpers import ROOT, shopify_signature
from tests.unit.test_shopify_mapping import SHOP, documented_order

SECRET = "test-shopify-secret"
OLD_SECRET = "test-shopify-old-secret"
PIXEL = "CTESTPIXEL01"
HOUR = dt.timedelta(hours=1)
GRANTED = {"marketing_allowed": True, "sale_of_data_allowed": True}
DENIED = {"marketing_allowed": False}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def big_id() -> int:
    """A fresh order id beyond 2^53, as real Shopify ids are."""
    return random.randrange(2**60, 2**62)


def recent(seconds_ago: float = 60) -> str:
    """An ISO 8601 time ``seconds_ago`` before now, as Shopify writes them."""
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")


def new_order(**changes: Any) -> dict:
    """The documented order with fresh ids, tokens and times, so tests never share an order.

    Fresh times: the webhook refuses order bodies older than SHOPIFY_MAX_ORDER_AGE_DAYS as replays.
    """
    order_id = big_id()
    return documented_order(
        **{"id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
           "checkout_token": f"chk-{uuid.uuid4().hex}", "cart_token": f"cart-{uuid.uuid4().hex}",
           "created_at": recent(120), "processed_at": recent(120), "updated_at": recent(60), **changes}
    )  # fmt: skip


@dataclass
class Webhook:
    client: Any
    store: Any
    topic: Any

    def post(
        self,
        payload: dict | bytes,
        topic: str = "orders/paid",
        *,
        secret: str = SECRET,
        delivery_id: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION,
            "X-Shopify-Webhook-Id": delivery_id or str(uuid.uuid4()),
            "X-Shopify-Hmac-Sha256": shopify_signature(body, secret),
            **(headers or {}),
        }
        return self.client.post("/", data=body, headers={k: v for k, v in sent.items() if v is not None})

    def grant(self, join_kind: str, token: str, consent: dict | None = None, **context: Any) -> None:
        """What the collect endpoint stores for a consenting shopper."""
        self.store.put_click_context(PIXEL, [(join_kind, token)], {"consent": consent or GRANTED, **context}, HOUR)

    def published(self, expected: int = 1) -> list[dict]:
        return [decode_message(m) for m in self.topic.pull_all(expected)]

    def nothing_published(self) -> bool:
        return self.topic.pull(timeout=1.0) == []

    def messages(self, expected: int) -> list[Any]:
        """Exactly ``expected`` messages on the topic, undecoded (for ``downstream.deliver``)."""
        messages = self.topic.pull_all(expected)
        assert len(messages) == expected, f"{len(messages)} messages on the topic, expected {expected}"
        assert self.nothing_published(), "more messages on the topic than expected"
        return messages

    def documents(self, collection: str) -> list[dict]:
        return [d.to_dict() for d in self.store.collection(collection).stream()]

    def no_trace(self) -> bool:
        return all(not self.documents(name) for name in COLLECTIONS) and self.nothing_published()


def settings_env(emulators, collection_prefix: str, topic_name: str) -> dict[str, str]:
    return {
        **emulators.env,
        "TIKTOK_PIXEL_CODE": PIXEL,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "SHOPIFY_WEBHOOK_SECRET": f"{SECRET},{OLD_SECRET}",
        "CONSENT_POLICY": "opt-in",
        "FIRESTORE_COLLECTION_PREFIX": collection_prefix,
        "PUBSUB_TOPIC": topic_name,
    }


@pytest.fixture
def webhook(monkeypatch, emulators, collection_prefix, topic, store) -> Webhook:
    for name, value in settings_env(emulators, collection_prefix, topic.topic).items():
        monkeypatch.setenv(name, value)
    app = functions_framework.create_app(
        target="shopify_webhook", source=str(ROOT / "functions" / "shopify_webhook" / "main.py")
    )
    return Webhook(app.test_client(), store, topic)


# --- health and configuration ----------------------------------------------------------


def test_a_misconfigured_function_answers_503_with_a_logged_reason_not_500(webhook, monkeypatch, capsys):
    monkeypatch.delenv("SHOPIFY_WEBHOOK_SECRET")
    response = webhook.post(new_order())
    assert response.status_code == 503
    assert "SHOPIFY_WEBHOOK_SECRET" in capsys.readouterr().out
    assert webhook.no_trace()


def test_other_methods_are_refused(webhook):
    assert webhook.client.put("/", data=b"{}").status_code == 405


# --- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    ["forged", "unsigned", "truncated", "empty", "re-serialized"],
)
def test_unauthenticated_requests_get_401_and_leave_no_trace(webhook, tamper):
    order = new_order()
    body = json.dumps(order, indent=1).encode()
    signature = shopify_signature(body, SECRET)
    sent, headers = body, {"X-Shopify-Hmac-Sha256": signature}
    if tamper == "forged":
        headers = {"X-Shopify-Hmac-Sha256": shopify_signature(body, "someone-elses-secret")}
    elif tamper == "unsigned":
        headers = {"X-Shopify-Hmac-Sha256": None}
    elif tamper == "truncated":
        sent = body[: len(body) // 2]
    elif tamper == "empty":
        sent = b""
    elif tamper == "re-serialized":
        sent = json.dumps(order).encode()
    response = webhook.post(sent, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert webhook.no_trace()


def test_unknown_shop_is_refused_with_its_reason_before_any_check(webhook):
    response = webhook.post(new_order(), headers={"X-Shopify-Shop-Domain": "other-shop.myshopify.com"})
    assert response.status_code == 401
    assert "unknown shop 'other-shop.myshopify.com'" in response.get_json()["reason"]
    assert webhook.no_trace()


def test_a_rotated_secret_still_verifies(webhook):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    response = webhook.post(order, secret=OLD_SECRET)
    assert response.get_json()["outcome"] == "published"


# --- the Purchase -----------------------------------------------------------------------


def test_a_paid_order_with_granted_consent_publishes_one_hashed_purchase(webhook, capsys):
    order = new_order(
        note_attributes=[{"name": "_ttclid", "value": "E.C.P.note"}, {"name": "_ttp", "value": "ttp-note"}],
        landing_site="/products/aviator?ttclid=E.C.P.landing",
        referring_site="https://www.tiktok.com/",
        browser_ip="203.0.113.24",
    )
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"], ttclid="E.C.P.context", user_agent="UA-ctx")
    response = webhook.post(order)
    event_id = f"shopify:{SHOP}:order:{order['id']}:Purchase"
    assert (response.status_code, response.get_json()) == (
        200,
        {"outcome": "published", "reason": "Purchase published", "event_id": event_id},
    )
    [envelope] = webhook.published()
    assert envelope["event_id"] == event_id
    assert envelope["pixel_code"] == PIXEL
    assert envelope["consent"] == "granted"
    assert envelope["user"]["ttclid"] == "E.C.P.note"  # the order's own click id beats the context's
    assert envelope["user"]["ttp"] == "ttp-note"
    assert envelope["user"]["user_agent"] == "UA-ctx"  # filled from the context where the order has none
    assert envelope["user"]["email"] == [sha("jon@example.com"), sha("john@example.com")]
    assert envelope["page"] == {
        "url": f"https://{SHOP}/products/aviator?ttclid=E.C.P.landing",
        "referrer": "https://www.tiktok.com/",
    }
    assert envelope["properties"]["order_id"] == str(order["id"])
    # Raw PII never reaches the logs.
    out = capsys.readouterr().out
    for raw in ("jon@example.com", "john@example.com", "Smith", "Shipper", "123 Shipping Street", "555-555-SHIP"):
        assert raw not in out


def test_twenty_concurrent_duplicate_deliveries_send_one_event(webhook, downstream):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    delivery_id = str(uuid.uuid4())
    event_id = f"shopify:{SHOP}:order:{order['id']}:Purchase"

    def deliver(_):
        body = webhook.post(order, delivery_id=delivery_id).get_json()
        return body["outcome"], body["reason"], body["event_id"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(deliver, range(20)))
    # No delivery claim nor order claim (either could outlive a failed attempt and lose the order):
    # every copy is published, and the sender's claim on the deterministic event_id dedupes.
    assert outcomes == [("published", "Purchase published", event_id)] * 20
    assert webhook.documents(WEBHOOK_DELIVERIES) == [] and webhook.documents(ORDER_EVENTS) == []
    messages = webhook.messages(20)
    assert {decode_message(m)["event_id"] for m in messages} == {event_id}
    assert sorted(downstream.deliver(messages)) == ["duplicate"] * 19 + ["sent"]
    assert [e["event_id"] for e in downstream.events()] == [event_id]


def test_twenty_concurrent_deliveries_of_one_order_under_different_ids_send_one_event(webhook, downstream):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    topics = ["orders/create", "orders/paid"] * 10
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda t: webhook.post(order, t).get_json()["outcome"], topics))
    assert outcomes == ["published"] * 20
    messages = webhook.messages(20)
    assert {decode_message(m)["event_id"] for m in messages} == {f"shopify:{SHOP}:order:{order['id']}:Purchase"}
    assert sorted(downstream.deliver(messages)) == ["duplicate"] * 19 + ["sent"]
    assert len(downstream.events()) == 1


def test_orders_create_then_orders_paid_give_one_purchase(webhook, downstream):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CART, order["cart_token"])
    created = webhook.post(order, "orders/create").get_json()
    paid = webhook.post(order, "orders/paid").get_json()
    replayed = webhook.post(order, "orders/paid").get_json()
    assert [created["outcome"], paid["outcome"], replayed["outcome"]] == ["published", "published", "published"]
    assert created["event_id"] == paid["event_id"] == replayed["event_id"]
    messages = webhook.messages(3)
    assert {decode_message(m)["event_id"] for m in messages} == {created["event_id"]}
    # One push at a time, as the three arrive one after the other: the first is sent, the others are duplicates.
    assert [downstream.deliver([m])[0] for m in messages] == ["sent", "duplicate", "duplicate"]
    assert [e["event_id"] for e in downstream.events()] == [created["event_id"]]


def test_an_unpaid_orders_create_waits_and_orders_paid_sends_the_purchase(webhook):
    order = new_order(financial_status="pending")
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert webhook.post(order, "orders/create").get_json()["outcome"] == "ignored"
    assert webhook.nothing_published()
    order["financial_status"] = "paid"
    assert webhook.post(order, "orders/paid").get_json()["outcome"] == "published"


def test_a_ttclid_stored_under_the_cart_token_ends_up_on_the_purchase(webhook):
    order = new_order(note_attributes=[], landing_site="/")
    webhook.grant(JOIN_SHOPIFY_CART, order["cart_token"], ttclid="E.C.P.cart-click", ttp="ttp-cart")
    assert webhook.post(order).get_json()["outcome"] == "published"
    [envelope] = webhook.published()
    assert (envelope["user"]["ttclid"], envelope["user"]["ttp"]) == ("E.C.P.cart-click", "ttp-cart")


def test_consent_denied_means_no_purchase_is_published(webhook):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"], consent=DENIED, ttclid="E.C.P.denied")
    body = webhook.post(order).get_json()
    assert (body["outcome"], body["reason"]) == ("withheld_consent", "consent denied")
    assert webhook.nothing_published()
    # Nothing claimed, only the outcome record the report counts: a later grant can still send it.
    records = webhook.documents(ORDER_EVENTS)
    assert [(r["outcome"], r["consent"], "state" in r) for r in records] == [("withheld_consent", "denied", False)]
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert webhook.post(order).get_json()["outcome"] == "published"
    assert len(webhook.published()) == 1


def test_no_consent_record_under_opt_in_is_withheld_and_counted(webhook, capsys):
    body = webhook.post(new_order()).get_json()
    assert (body["outcome"], body["reason"]) == ("withheld_consent", "consent no_consent")
    assert webhook.nothing_published()
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(r.get("outcome") == "withheld_consent" and r.get("consent") == "no_consent" for r in logged)


def test_sale_of_data_opt_out_sends_with_limited_data_use(webhook):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"], consent={"marketing_allowed": True,
                                                                          "sale_of_data_allowed": False})  # fmt: skip
    assert webhook.post(order).get_json()["outcome"] == "published"
    assert webhook.published()[0]["limited_data_use"] is True


def test_skipped_test_orders_touch_nothing(webhook):
    order = new_order(test=True)
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    body = webhook.post(order).get_json()
    assert (body["outcome"], body["reason"]) == ("skipped", "test order (include_test_orders is off)")
    assert webhook.documents(WEBHOOK_DELIVERIES) == [] and webhook.nothing_published()


# --- bad content from a valid signer ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "body is not valid JSON"), (b"[]", "body is JSON list, expected an object"),
     (b'{"id": "abc"}', "order payload without a numeric id (field 'id')"),
     (b'{"id": 1.5e18, "financial_status": "paid"}', "order payload without a numeric id (field 'id')")],
)  # fmt: skip
def test_a_malformed_body_from_a_valid_signer_gets_200_with_its_reason(webhook, body, reason, capsys):
    response = webhook.post(body)
    assert (response.status_code, response.get_json()) == (200, {"outcome": "rejected", "reason": reason})
    assert reason in capsys.readouterr().out
    assert webhook.no_trace()


def test_wrongly_typed_fields_still_give_a_2xx(webhook):
    order = new_order(customer=["x"], line_items="none", billing_address=7, total_price_set=None,
                      note_attributes={"_ttclid": 5}, client_details="x")  # fmt: skip
    response = webhook.post(order)
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "withheld_consent"


def test_a_missing_topic_is_acknowledged_and_logged(webhook):
    response = webhook.post(new_order(), headers={"X-Shopify-Topic": None})
    assert (response.status_code, response.get_json()["outcome"]) == (200, "ignored")


def test_an_unknown_topic_is_acknowledged_and_logged(webhook, capsys):
    response = webhook.post({"id": 1}, "products/update")
    assert (response.status_code, response.get_json()["outcome"]) == (200, "ignored")
    assert "products/update" in capsys.readouterr().out


# --- failure and retry ------------------------------------------------------------------------


def test_a_failed_publish_answers_503_and_releases_everything_so_the_retry_succeeds(
    emulators, collection_prefix, topic, store, pubsub_clients
):
    settings = ShopifySettings.from_env(settings_env(emulators, collection_prefix, topic.topic))
    tenants = settings.tenants()
    shops = settings.shops(tenants)
    broken = EventPublisher(pubsub_clients[0], emulators.project, f"missing-{uuid.uuid4().hex[:8]}")
    working = EventPublisher(pubsub_clients[0], emulators.project, topic.topic)
    order = new_order()
    store.put_click_context(PIXEL, [(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])], {"consent": GRANTED}, HOUR)
    body = json.dumps(order).encode()
    delivery = Delivery.from_headers(
        {"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Webhook-Id": "w-retry",
         "X-Shopify-Hmac-Sha256": shopify_signature(body, SECRET)}
    )  # fmt: skip
    failed = handle(delivery, body, Runtime(tenants, shops, store=store, publisher=broken))
    assert failed.status == 503
    assert store.get(WEBHOOK_DELIVERIES, ("shopify", SHOP, "orders/paid", "w-retry")) is None
    assert store.get(ORDER_EVENTS, ("shopify", SHOP, str(order["id"]), "Purchase")) is None
    retried = handle(delivery, body, Runtime(tenants, shops, store=store, publisher=working))
    assert (retried.status, retried.body["outcome"]) == (200, "published")
    assert len(topic.pull_all(1)) == 1


def test_a_503_logs_one_outcome_line_error_unavailable_at_error(webhook, monkeypatch, capsys):
    """Shopify's 503s are counted by the alert on ``error_unavailable`` (terraform/monitoring.tf), like collect's."""
    monkeypatch.setenv("PUBSUB_TOPIC", f"missing-{uuid.uuid4().hex[:8]}")
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    capsys.readouterr()
    response = webhook.post(order)
    assert (response.status_code, response.get_json()) == (
        503, {"error": "temporarily unavailable", "reason": "processing failed, retry later"}
    )  # fmt: skip
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [line] = [entry for entry in logged if "outcome" in entry]
    assert (line["outcome"], line["severity"], line["message"]) == (
        "error_unavailable", "ERROR", "processing failed; Shopify will retry"
    )  # fmt: skip
    assert (line["shop"], line["topic"], line["via"], line["platform"]) == (SHOP, "orders/paid", "https", "shopify")
    assert line["error"] and line["delivery_id"]


# --- cancellations and refunds ------------------------------------------------------------------


def test_a_cancellation_after_the_purchase_is_recorded_and_sends_nothing(webhook, downstream):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert webhook.post(order).get_json()["outcome"] == "published"
    assert downstream.deliver(webhook.messages(1)) == ["sent"]  # the Purchase is at TikTok before the cancellation
    cancelled = dict(order, cancelled_at="2026-01-02T00:00:00Z", cancel_reason="customer")
    body = webhook.post(cancelled, "orders/cancelled").get_json()
    assert body["outcome"] == "recorded"
    assert "the Purchase stands" in body["reason"]
    record = webhook.store.get(ORDER_EVENTS, ("shopify", SHOP, str(order["id"]), "cancelled"))
    assert (record["kind"], record["cancel_reason"], record["shop"]) == ("cancelled", "customer", SHOP)
    assert webhook.store.get(EVENT_CLAIMS, (PIXEL, "Purchase", body["event_id"]))["state"] == "sent"
    assert webhook.nothing_published()
    assert len(downstream.events()) == 1


def test_a_cancellation_before_the_purchase_blocks_a_late_orders_paid(webhook, downstream):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    body = webhook.post(dict(order, cancelled_at="2026-01-02T00:00:00Z"), "orders/cancelled").get_json()
    assert body["outcome"] == "recorded"
    assert "no Purchase will be sent" in body["reason"]
    # Shopify retries carry the original, pre-cancellation payload: the receiver publishes it, the sender skips it.
    late = webhook.post(order, "orders/paid").get_json()
    assert (late["outcome"], late["event_id"]) == ("published", body["event_id"])
    assert downstream.deliver(webhook.messages(1)) == ["skipped"]
    assert downstream.events() == []
    assert webhook.store.get(EVENT_CLAIMS, (PIXEL, "Purchase", body["event_id"]))["state"] == "cancelled"


def test_a_cancellation_after_the_publish_but_before_the_send_blocks_the_purchase(webhook, downstream):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert webhook.post(order).get_json()["outcome"] == "published"
    [message] = webhook.messages(1)  # on the topic, not yet pushed to the sender
    body = webhook.post(dict(order, cancelled_at="2026-01-02T00:00:00Z"), "orders/cancelled").get_json()
    assert body["outcome"] == "recorded"
    assert "no Purchase will be sent" in body["reason"]
    assert downstream.deliver([message, message]) == ["skipped", "skipped"]  # and its redelivery
    assert downstream.events() == []


def test_a_refund_is_recorded_once_and_never_a_second_purchase(webhook):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    webhook.post(order)
    webhook.published()
    transaction = {"kind": "refund", "status": "success", "amount": "89.99", "currency": "USD"}
    refund_id = big_id()
    refund = {"id": refund_id, "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}", "order_id": order["id"],
              "created_at": recent(), "processed_at": recent(), "transactions": [transaction]}  # fmt: skip
    first = webhook.post(refund, "refunds/create").get_json()
    again = webhook.post(refund, "refunds/create").get_json()
    assert (first["outcome"], again["outcome"]) == ("recorded", "duplicate")
    record = webhook.store.get(ORDER_EVENTS, ("shopify", SHOP, str(order["id"]), f"refund-{refund['id']}"))
    assert (record["amount"], record["currency"]) == ("89.99", "USD")
    assert webhook.nothing_published()


# --- privacy webhooks ----------------------------------------------------------------------------


def test_customers_redact_deletes_the_customers_contexts_and_order_records(webhook):
    customer_id, other_id = big_id(), big_id()
    order = new_order()
    order["customer"]["id"] = customer_id
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"], customer_key=sha(str(customer_id)))
    webhook.grant(JOIN_SHOPIFY_CART, f"cart-{other_id}", customer_key=sha(str(other_id)))
    assert webhook.post(order).get_json()["outcome"] == "published"
    redact = {"shop_domain": SHOP, "customer": {"id": customer_id}, "orders_to_redact": [order["id"]]}
    body = webhook.post(redact, "customers/redact").get_json()
    assert body["outcome"] == "redacted"
    contexts = webhook.documents(CLICK_CONTEXTS)
    assert [c["customer_key"] for c in contexts] == [sha(str(other_id))]
    assert webhook.store.get(ORDER_EVENTS, ("shopify", SHOP, str(order["id"]), "Purchase")) is None


def test_shop_redact_deletes_everything_held_for_the_shop(webhook):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    webhook.post(order)
    webhook.post(dict(order, cancelled_at="2026-01-02T00:00:00Z"), "orders/cancelled")
    # Deliveries are no longer claimed, but databases deployed before hold such records.
    webhook.store.claim_once(WEBHOOK_DELIVERIES, ("shopify", SHOP, "orders/paid", "w-old"), HOUR, shop=SHOP)
    assert webhook.documents(ORDER_EVENTS) and webhook.documents(WEBHOOK_DELIVERIES)
    unrelated = webhook.store.collection(ORDER_EVENTS).document(doc_id("woocommerce", "woo.test", "7", "Purchase"))
    unrelated.set({"event_id": "woocommerce:woo.test:order:7:Purchase"})
    body = webhook.post({"shop_id": 1, "shop_domain": SHOP}, "shop/redact").get_json()
    assert body["outcome"] == "redacted"
    assert webhook.documents(CLICK_CONTEXTS) == []
    assert webhook.documents(WEBHOOK_DELIVERIES) == []
    assert webhook.documents(ORDER_EVENTS) == [{"event_id": "woocommerce:woo.test:order:7:Purchase"}]


def test_customers_data_request_is_acknowledged_and_logged_without_pii(webhook, capsys):
    request = {"shop_domain": SHOP, "customer": {"id": 1, "email": "person@example.org", "phone": "+12133734253"},
               "orders_requested": [1, 2], "data_request": {"id": 9999}}  # fmt: skip
    body = webhook.post(request, "customers/data_request").get_json()
    assert body["outcome"] == "recorded"
    out = capsys.readouterr().out
    assert "9999" in out and "person@example.org" not in out and "2133734253" not in out


# --- several shops ----------------------------------------------------------------------------


def test_the_shop_domain_selects_the_secrets_pixel_and_policies(webhook, monkeypatch):
    tenants = {
        "pixels": {"CPIXELA": {"pixel_code": "CPIXELA"},
                   "CPIXELB": {"pixel_code": "CPIXELB", "consent_policy": "opt-out"}},
        "shopify_shops": {
            "a.myshopify.com": {"domain": "a.myshopify.com", "pixel_code": "CPIXELA"},
            "b.myshopify.com": {"domain": "b.myshopify.com", "pixel_code": "CPIXELB", "content_id": "sku"},
        },
    }  # fmt: skip
    monkeypatch.setenv("PIPELINE_TENANTS", json.dumps(tenants))
    monkeypatch.setenv(
        "SHOPIFY_WEBHOOK_SECRET", json.dumps({"a.myshopify.com": "secret-a", "b.myshopify.com": "secret-b"})
    )
    monkeypatch.delenv("SHOPIFY_SHOP_DOMAIN")
    order = new_order()

    def post(shop: str, secret: str):
        return webhook.post(order, secret=secret, headers={"X-Shopify-Shop-Domain": shop})

    assert post("b.myshopify.com", "secret-a").status_code == 401
    assert post("a.myshopify.com", "secret-a").get_json()["outcome"] == "withheld_consent"  # opt-in, no consent
    published = post("b.myshopify.com", "secret-b").get_json()  # opt-out: sent without a consent record
    assert published["event_id"] == f"shopify:b.myshopify.com:order:{order['id']}:Purchase"
    [envelope] = webhook.published()
    assert (envelope["pixel_code"], envelope["consent"]) == ("CPIXELB", "policy_opt_out")
    assert envelope["properties"]["shop_id"] == "b.myshopify.com"
    assert [c["content_id"] for c in envelope["properties"]["contents"]][:2] == ["SKU2006-001", "LENS-PROTECT-2YR"]


# --- deliveries dying mid-way, concurrent copies, slow dependencies ------------------------------


def _handle(emulators, collection_prefix, topic, store, body: bytes, delivery_id: str, **runtime: Any):
    settings = ShopifySettings.from_env(settings_env(emulators, collection_prefix, topic.topic))
    publisher = runtime.pop("publisher", None)
    if publisher is None:
        publisher = EventPublisher(make_publisher_client(), emulators.project, topic.topic)
    delivery = Delivery.from_headers(
        {"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Webhook-Id": delivery_id,
         "X-Shopify-Hmac-Sha256": shopify_signature(body, SECRET)}
    )  # fmt: skip
    tenants = settings.tenants()
    return handle(
        delivery, body, Runtime(tenants, settings.shops(tenants), store=store, publisher=publisher, **runtime)
    )


def test_a_sent_order_event_leaves_its_one_claim_marked_sent_for_one_read_and_two_writes(webhook, downstream):
    """Was: the receiver's claim is marked "published" (so it is never taken over and re-published).

    The only claim of an order event is now the sender's, on its deterministic
    event_id: it is marked "sent" once TikTok accepted it, so any later copy is a
    duplicate; and the whole delivery, receiver and sender, costs the issue's
    budget of at most one read and two writes (exactly: the checkout token finds
    the context; the claim is created, then marked sent).
    """
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    before = COUNTERS.snapshot()
    body = webhook.post(order).get_json()
    after = COUNTERS.snapshot()
    assert body["outcome"] == "published"
    receiver = {k: after.get(k, 0) - before.get(k, 0) for k in ("firestore.reads", "firestore.writes")}
    assert receiver == {"firestore.reads": 1, "firestore.writes": 0}
    assert webhook.documents(ORDER_EVENTS) == [] and webhook.documents(WEBHOOK_DELIVERIES) == []
    assert downstream.deliver(webhook.messages(1)) == ["sent"]
    sender = downstream.claims.counters.snapshot()
    assert (sender.get("firestore.reads", 0), sender.get("firestore.writes", 0)) == (0, 2)
    claim = webhook.store.get(EVENT_CLAIMS, (PIXEL, "Purchase", body["event_id"]))
    assert (claim["state"], claim["source"]) == ("sent", "shopify")
    assert webhook.post(order).get_json()["outcome"] == "published"
    assert downstream.deliver(webhook.messages(1)) == ["duplicate"]
    assert len(downstream.events()) == 1


class _DiesAfterPublishing:
    """A publisher whose message lands, then the instance dies before answering Shopify."""

    def __init__(self, publisher: Any) -> None:
        self.publisher = publisher

    def publish(self, envelopes: Any) -> Any:
        self.publisher.publish(envelopes)
        raise RuntimeError("instance died after publishing")


class _DiesBeforePublishing:
    def publish(self, envelopes: Any) -> Any:
        raise RuntimeError("instance died before publishing")


def test_a_delivery_dying_before_or_after_its_publish_orphans_nothing_and_the_event_is_sent_once(
    emulators, collection_prefix, topic, store, downstream
):
    """Was: a receiver claim orphaned before its publish is taken over after its lease, the event sent once.

    There is no receiver claim to orphan any more: a delivery that dies before
    publishing leaves nothing in Firestore and its retry publishes; one that dies
    after publishing has its retry publish a second copy, which the sender's
    claim answers "duplicate". One Purchase at TikTok either way.
    """
    order = new_order()
    store.put_click_context(PIXEL, [(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])], {"consent": GRANTED}, HOUR)
    body = json.dumps(order).encode()
    working = EventPublisher(make_publisher_client(), emulators.project, topic.topic)
    died = _handle(emulators, collection_prefix, topic, store, body, "w-orphan", publisher=_DiesBeforePublishing())
    assert died.status == 503
    assert [store.collection(name).limit(1).get() for name in (ORDER_EVENTS, EVENT_CLAIMS, WEBHOOK_DELIVERIES)] == [
        [], [], []
    ]  # fmt: skip
    assert topic.pull(timeout=1.0) == []
    retried = _handle(emulators, collection_prefix, topic, store, body, "w-orphan",
                      publisher=_DiesAfterPublishing(working))  # fmt: skip
    assert retried.status == 503
    again = _handle(emulators, collection_prefix, topic, store, body, "w-orphan", publisher=working)
    assert (again.status, again.body["outcome"]) == (200, "published")
    messages = topic.pull_all(2)
    assert len(messages) == 2 and topic.pull(timeout=1.0) == []
    assert {decode_message(m)["event_id"] for m in messages} == {again.body["event_id"]}
    assert sorted(downstream.deliver(messages)) == ["duplicate", "sent"]
    assert [e["event_id"] for e in downstream.events()] == [again.body["event_id"]]


def test_a_copy_arriving_while_another_is_being_sent_is_retried_not_dropped_as_a_duplicate(webhook, downstream):
    """Was: a claim still being published answers 503 (not "duplicate"), and the retry once it settled is one.

    The same risk now sits at the sender: a copy of an order event whose claim a
    concurrent attempt holds must not be answered "duplicate" (that attempt may
    fail and send nothing). It answers "retry" for as long as the claim is held;
    once the holder failed and let go, the redelivered copy is sent, and any
    other copy is then a duplicate.
    """
    from shared.send.decode import decode_message as envelope_of

    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert [webhook.post(order).get_json()["outcome"] for _ in range(2)] == ["published", "published"]
    messages = webhook.messages(2)
    envelope = envelope_of({"data": base64.b64encode(messages[0].data).decode()})
    [holder] = downstream.claims.claim([(envelope, "m-holder")]).values()  # another attempt, mid-send
    assert holder.state == "claimed"
    with pytest.raises(AssertionError, match="still answered retry"):
        downstream.deliver(messages, within=0.5)
    assert downstream.events() == []
    downstream.claims.finalize(released=[(envelope, holder)])  # the holder's send failed: it lets go
    assert sorted(downstream.deliver(messages)) == ["duplicate", "sent"]
    assert [e["event_id"] for e in downstream.events()] == [envelope.event_id]


def test_an_unreachable_firestore_answers_503_within_the_deadline_not_after_shopify_gave_up(
    emulators, collection_prefix, topic
):
    import time

    from tests.emulator.test_woocommerce_webhook import emulator_host_pointing_nowhere

    with emulator_host_pointing_nowhere("FIRESTORE_EMULATOR_HOST"):
        unreachable = Store(make_client(emulators.project), collection_prefix)
    started = time.monotonic()
    reply = _handle(emulators, collection_prefix, topic, unreachable, json.dumps(new_order()).encode(), "w-slow",
                    io_seconds=0.5)  # fmt: skip
    assert reply.status == 503
    assert time.monotonic() - started < 3.0  # the delivery's 0.5 s budget, with room for a busy machine


def test_a_client_that_cannot_be_made_answers_503_not_500(emulators, collection_prefix, topic):
    def cannot_make():
        raise RuntimeError("no credentials")

    settings = ShopifySettings.from_env(settings_env(emulators, collection_prefix, topic.topic))
    body = json.dumps(new_order()).encode()
    delivery = Delivery.from_headers(
        {"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Webhook-Id": "w-noclient",
         "X-Shopify-Hmac-Sha256": shopify_signature(body, SECRET)}
    )  # fmt: skip
    tenants = settings.tenants()
    runtime = Runtime(tenants, settings.shops(tenants), store_factory=cannot_make, publisher_factory=cannot_make)
    assert handle(delivery, body, runtime).status == 503

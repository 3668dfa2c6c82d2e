"""The Shopify webhook against hostile and mangled input, through the real function and emulators.

- Replays: Shopify's HMAC covers the body only, so a captured body re-sent
  under another topic, or days later, is refused with a 200 "rejected" and
  changes nothing.
- Bodies too large are refused (413) while reading, before authentication.
- Signed bodies that are structurally hostile are a 200 "rejected"; a mangled
  free-text field (a lone surrogate) does not lose the order.
- Personal data hidden in URLs or note attributes never reaches Pub/Sub.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import functions_framework
import pytest

from shared.infra.store import CLICK_CONTEXTS, EVENT_CLAIMS, ORDER_EVENTS
from shared.receive.orders import JOIN_SHOPIFY_CHECKOUT
from tests.conftest import decode_message
from tests.emulator.test_shopify_webhook import PIXEL, SECRET, Webhook, new_order, recent, settings_env, sha
from tests.helpers import ROOT, shopify_signature
from tests.unit.test_shopify_mapping import SHOP

DAY = 86_400
MIB = 1024 * 1024


def _app():
    return functions_framework.create_app(
        target="shopify_webhook", source=str(ROOT / "functions" / "shopify_webhook" / "main.py")
    )


@pytest.fixture
def webhook(monkeypatch, emulators, collection_prefix, topic, store) -> Webhook:
    for name, value in settings_env(emulators, collection_prefix, topic.topic).items():
        monkeypatch.setenv(name, value)
    return Webhook(_app().test_client(), store, topic)


def logged(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


# --- replays under another topic ------------------------------------------------------------


def test_a_paid_order_replayed_as_orders_cancelled_is_refused_and_the_purchase_still_goes_out(webhook):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    replay = webhook.post(order, "orders/cancelled")
    assert (replay.status_code, replay.get_json()["outcome"]) == (200, "rejected")
    assert "cancelled_at" in replay.get_json()["reason"]
    assert webhook.documents(ORDER_EVENTS) == []  # no cancellation record, no blocked Purchase
    assert webhook.post(order, "orders/paid").get_json()["outcome"] == "published"
    assert len(webhook.published()) == 1


def test_a_paid_order_replayed_as_customers_redact_deletes_nothing(webhook, downstream):
    order = new_order()
    customer_id = order["customer"]["id"]
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"], customer_key=sha(str(customer_id)))
    purchase = webhook.post(order).get_json()
    assert purchase["outcome"] == "published"
    assert downstream.deliver(webhook.messages(1)) == ["sent"]
    replay = webhook.post(order, "customers/redact").get_json()
    assert (replay["outcome"], replay["reason"]) == (
        "rejected",
        "customers/redact body does not name this shop in shop_domain",
    )
    assert [c["customer_key"] for c in webhook.documents(CLICK_CONTEXTS)] == [sha(str(customer_id))]
    # The order's claim (the sender's, since receivers claim nothing) is still there: a replay stays a duplicate.
    assert webhook.store.get(EVENT_CLAIMS, (PIXEL, "Purchase", purchase["event_id"]))["state"] == "sent"


def test_a_paid_order_replayed_as_shop_redact_deletes_nothing(webhook, downstream):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert webhook.post(order).get_json()["outcome"] == "published"
    assert downstream.deliver(webhook.messages(1)) == ["sent"]
    # A refund record too: shop/redact would delete the shop's order records (receivers no longer write a Purchase's).
    transaction = {"kind": "refund", "status": "success", "amount": "1.00", "currency": "USD"}
    refund = {"id": 77, "order_id": order["id"], "created_at": recent(), "transactions": [transaction]}
    assert webhook.post(refund, "refunds/create").get_json()["outcome"] == "recorded"
    replay = webhook.post(order, "shop/redact").get_json()
    assert (replay["outcome"], replay["reason"]) == (
        "rejected",
        "shop/redact body does not name this shop in shop_domain",
    )
    assert len(webhook.documents(CLICK_CONTEXTS)) == 1
    assert len(webhook.documents(ORDER_EVENTS)) == 1
    assert [c["state"] for c in webhook.documents(EVENT_CLAIMS)] == ["sent"]


def test_a_redaction_naming_another_shop_deletes_nothing(webhook):
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    body = webhook.post({"shop_id": 1, "shop_domain": "other-shop.myshopify.com"}, "shop/redact").get_json()
    assert body["outcome"] == "rejected"
    assert len(webhook.documents(CLICK_CONTEXTS)) == 1


# --- replays after days -----------------------------------------------------------------------


def test_an_order_body_replayed_after_eight_days_is_refused_with_its_age_logged(webhook, capsys):
    # The signed bytes of a real delivery, captured and re-sent once our order records (8 days) expired.
    order = new_order(created_at=recent(8 * DAY), processed_at=recent(8 * DAY), updated_at=recent(8 * DAY))
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    response = webhook.post(order, headers={"X-Shopify-Triggered-At": recent(0)})  # unsigned: not believed
    assert (response.status_code, response.get_json()["outcome"]) == (200, "rejected")
    assert "older than 7 days" in response.get_json()["reason"]
    assert webhook.documents(ORDER_EVENTS) == [] and webhook.nothing_published()
    [record] = [r for r in logged(capsys) if r.get("outcome") == "rejected"]
    assert 8 * DAY <= record["age_seconds"] < 8 * DAY + 120 and record["max_age_seconds"] == 7 * DAY


def test_an_order_paid_days_after_it_was_created_is_fresh_by_its_updated_at(webhook):
    order = new_order(created_at=recent(10 * DAY), processed_at=recent(3 * DAY), updated_at=recent(30))
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert webhook.post(order).get_json()["outcome"] == "published"


def test_a_fresh_body_whose_purchase_is_older_than_the_order_window_is_skipped_not_rejected(webhook):
    # The body passes SHOPIFY_MAX_ORDER_AGE_DAYS by its updated_at, but the Purchase's event_time
    # (processed_at) is 10 days back: outside ORDER_MAX_EVENT_AGE_DAYS, never sent (sent once in its life).
    order = new_order(created_at=recent(10 * DAY), processed_at=recent(10 * DAY), updated_at=recent(30))
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    response = webhook.post(order)
    assert (response.status_code, response.get_json()["outcome"]) == (200, "skipped")
    assert "ORDER_MAX_EVENT_AGE_DAYS" in response.get_json()["reason"]
    assert webhook.nothing_published()


def test_the_max_age_is_a_setting(webhook, monkeypatch):
    monkeypatch.setenv("SHOPIFY_MAX_ORDER_AGE_DAYS", "1")
    order = new_order(created_at=recent(2 * DAY), processed_at=recent(2 * DAY), updated_at=recent(2 * DAY))
    body = webhook.post(order).get_json()
    assert (body["outcome"], body["reason"]) == (
        "rejected",
        "body is older than 1 days (SHOPIFY_MAX_ORDER_AGE_DAYS): refused as a replay",
    )


# --- hostile and mangled signed bodies ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"id": 1, "line_items": ' + b"[" * 1000 + b"]" * 1000 + b"}",
     b'{"id": ' + b"9" * 5000 + b', "financial_status": "paid"}',
     b'{"id": 1, "financial_status": "paid", "total_price": 1e999}',
     b'{"id": 1, "total_price": NaN}'],
    ids=["nested-1000-deep", "5000-digit-integer", "1e999", "NaN"],
)  # fmt: skip
def test_structurally_hostile_signed_bodies_get_200_rejected_and_leave_no_trace(webhook, body, capsys):
    response = webhook.post(body)
    assert (response.status_code, response.get_json()) == (
        200,
        {"outcome": "rejected", "reason": "body is not valid JSON"},
    )
    [record] = [r for r in logged(capsys) if r.get("outcome") == "rejected"]
    assert record["detail"]  # what exactly was wrong, for the operator; never the input itself
    assert webhook.no_trace()


def test_a_lone_surrogate_in_user_agent_and_landing_site_does_not_lose_the_order(webhook, downstream):
    order = new_order(
        landing_site="/products/x?ttclid=E.C.P.surrogate&utm_source=tik\ud800tok",
        client_details={"browser_ip": "203.0.113.24", "user_agent": "Mozilla/5.0 \udc00 Broken"},
        note_attributes=[],
    )
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    body = json.dumps(order).encode()  # ensure_ascii: the lone surrogates travel as \ud800 escapes
    assert b"\\ud800" in body and b"\\udc00" in body
    responses = [webhook.post(body), webhook.post(body)]  # and its retry: published again, not a 503
    assert [(r.status_code, r.get_json()["outcome"]) for r in responses] == [(200, "published"), (200, "published")]
    messages = webhook.messages(2)
    envelope, again = (decode_message(m) for m in messages)
    assert again == envelope  # the same event, byte for byte after decoding: the sender sends it once
    assert sorted(downstream.deliver(messages)) == ["duplicate", "sent"]
    assert len(downstream.events()) == 1
    assert envelope["user"]["user_agent"] == "Mozilla/5.0 \ufffd Broken"
    assert envelope["user"]["ttclid"] == "E.C.P.surrogate"
    assert envelope["page"]["url"].startswith(f"https://{SHOP}/products/x?ttclid=E.C.P.surrogate&utm_source=tik")


# --- personal data in free text -------------------------------------------------------------------


def test_emails_and_phones_in_landing_site_referrer_and_note_attributes_never_reach_pubsub(webhook):
    order = new_order(
        landing_site="/pages/thanks?email=jo.shopper%40inbox.test&phone=%2B12133734253&ttclid=E.C.P.pii"
        "&utm_source=tiktok&utm_content=jo.shopper@inbox.test",
        referring_site="https://webmail.example/read/jo.shopper@inbox.test"
        "?to=jo.shopper@inbox.test&tel=+44 20 7946 0958",
        note_attributes=[{"name": "_ttclid", "value": "jo.shopper@inbox.test"},
                         {"name": "_ttp", "value": "+447946095811"}],
    )  # fmt: skip
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    assert webhook.post(order).get_json()["outcome"] == "published"
    [message] = webhook.topic.pull_all(1)
    raw = message.data.decode()
    for pii in ("jo.shopper", "inbox.test", "%40", "2133734253", "7946", "jon@example.com"):
        assert pii not in raw
    envelope = json.loads(raw)
    assert envelope["user"]["ttclid"] == "E.C.P.pii"  # read from the raw landing_site, before scrubbing
    assert "ttp" not in envelope["user"] or envelope["user"]["ttp"] is None
    assert envelope["page"] == {
        "url": f"https://{SHOP}/pages/thanks?ttclid=E.C.P.pii&utm_source=tiktok&utm_content=%5Bredacted%5D",
        "referrer": "https://webmail.example/read/[redacted]",
    }


# --- body size, before authentication ----------------------------------------------------------------


class _HugeStream:
    """A request body of ``total`` bytes made as it is read, counting what was read."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.read_bytes = 0
        self._chunks = self._generate()

    def _generate(self) -> Iterator[bytes]:
        sent = 0
        while sent < self.total:
            chunk = b"x" * min(1 << 20, self.total - sent)
            sent += len(chunk)
            yield chunk

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.total
        if getattr(self, "_pending", b"") == b"":
            self._pending = next(self._chunks, b"")
        chunk, self._pending = self._pending[:size], self._pending[size:]
        self.read_bytes += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def _post_stream(webhook: Webhook, stream: _HugeStream, environ: dict):
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": SHOP,
               "X-Shopify-Hmac-Sha256": shopify_signature(b"x", SECRET), **environ.pop("headers", {})}  # fmt: skip
    return webhook.client.post("/", headers=headers, environ_overrides={"wsgi.input": stream, **environ})


def test_a_30_mb_chunked_body_is_refused_with_413_without_reading_it(webhook):
    stream = _HugeStream(30 * MIB)
    response = _post_stream(
        webhook, stream, {"wsgi.input_terminated": True, "headers": {"Transfer-Encoding": "chunked"}}
    )
    assert response.status_code == 413
    assert response.get_json() == {"error": "payload too large", "reason": "the body is larger than 4194304 bytes"}
    assert stream.read_bytes <= 4 * MIB + 1
    assert webhook.no_trace()


def test_a_declared_30_mb_body_is_refused_with_413_before_reading_anything(webhook):
    stream = _HugeStream(30 * MIB)
    response = _post_stream(webhook, stream, {"CONTENT_LENGTH": str(30 * MIB)})
    assert response.status_code == 413
    assert stream.read_bytes == 0
    assert webhook.no_trace()


def test_the_body_limit_is_a_setting_and_a_signed_order_under_it_goes_through(webhook, monkeypatch):
    monkeypatch.setenv("SHOPIFY_MAX_BODY_BYTES", "65536")
    order = new_order()
    webhook.grant(JOIN_SHOPIFY_CHECKOUT, order["checkout_token"])
    over = json.dumps({**order, "note": "n" * 70_000}).encode()
    assert webhook.post(over).status_code == 413
    under = json.dumps({**order, "note": "n" * 40_000}).encode()
    assert webhook.post(under).get_json()["outcome"] == "published"

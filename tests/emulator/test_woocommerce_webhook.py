"""The WooCommerce webhook in-process, against the real Firestore and Pub/Sub emulators.

Each test gets its own collection prefix and topic (conftest's ``store`` and
``topic``), runs the real ``functions/woocommerce_webhook/main.py`` through
functions-framework's test client (or :func:`shared.receive.woocommerce.handler.handle` for
outages, with clients pointed at a closed port), and proves what was (or was
not) written to Firestore and published to Pub/Sub.

The receiver claims nothing: every delivery of an order event is published,
and the sender's claim on the deterministic event_id makes them one Purchase
(shared.receive.orders). Tests of "one Purchase" therefore count the messages on the
topic exactly (none lost), push them all through the real sender
(conftest's ``downstream``) and count the Purchases TikTok (the sandbox) got.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import functions_framework
import pytest

from shared.domain.models import Envelope
from shared.infra.http import Reply
from shared.infra.metrics import Counters
from shared.infra.pubsub import EventPublisher, make_publisher_client
from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS, Store, make_client
from shared.receive.orders import JOIN_CUSTOMER, JOIN_WOO_ORDER_KEY
from shared.receive.woocommerce import flow
from shared.receive.woocommerce.handler import handle
from shared.receive.woocommerce.parking import parked_records
from shared.receive.woocommerce.runtime import Runtime
from shared.send.claims import ClaimStore
from tests.conftest import decode_message
from tests.helpers import ROOT, woocommerce_signature
from tests.unit.test_woocommerce import documented_order, with_meta

SITE_URL = "https://woo.test.example"
SITE = "woo.test.example"
SECRET = "test-woo-secret"
PIXEL = "CWOOTESTPIXEL"
HOUR = dt.timedelta(hours=1)
RAW_PII = ("john.doe@example.com", "John", "Doe", "969 Market", "94103", "San Francisco")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_order(status: str = "processing", **changes: Any) -> dict[str, Any]:
    """The documented order with a fresh id and order key, paid now (or not, if pending)."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    paid = status in ("processing", "completed", "refunded")
    order = documented_order(
        id=random.randrange(10**6, 10**12),
        order_key=f"wc_order_{uuid.uuid4().hex[:13]}",
        status=status,
        date_created_gmt=(now - dt.timedelta(minutes=5)).isoformat(),
        date_paid_gmt=now.isoformat() if paid else None,
        customer_ip_address="203.0.113.24",
        customer_user_agent="Mozilla/5.0 (X11; Linux x86_64) Test",
    )
    order.update(changes)
    return order


def headers_for(body: bytes, topic: str, *, secret: str = SECRET, source: str = SITE_URL) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": source + "/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": "order",
        "X-WC-Webhook-Event": topic.split(".")[-1],
        "X-WC-Webhook-ID": "12",
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
        "X-WC-Webhook-Signature": woocommerce_signature(body, secret),
    }


@dataclass
class Webhook:
    client: Any
    store: Any
    topic: Any

    def post(self, payload: dict | bytes, topic: str = "order.updated", *, headers: dict | None = None, **kw: Any):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {**headers_for(body, topic, **kw), **(headers or {})}
        return self.client.post("/", data=body, headers={k: v for k, v in sent.items() if v is not None})

    def grant(self, order: dict, consent: dict | None = None, **context: Any) -> None:
        """What the collect endpoint stores for a consenting shopper, under the order key."""
        consent = consent or {"granted": True}
        self.store.put_click_context(PIXEL, [(JOIN_WOO_ORDER_KEY, order["order_key"])], {"consent": consent, **context},
                                     HOUR)  # fmt: skip

    def published(self, expected: int = 1) -> list[dict]:
        return [decode_message(m) for m in self.topic.pull_all(expected)]

    def messages(self, expected: int) -> list[Any]:
        """The messages on the topic: exactly ``expected`` of them."""
        return exactly(self.topic, expected)

    def exactly_one_published(self) -> dict:
        (first,) = self.published(1)
        assert self.nothing_published(), "a second message was published"
        return first

    def nothing_published(self) -> bool:
        return self.topic.pull(timeout=1.5) == []

    def no_claims(self) -> bool:
        return list(self.store.collection(ORDER_EVENTS).limit(1).stream()) == []


def exactly(topic: Any, expected: int) -> list[Any]:
    """The messages on ``topic``: exactly ``expected`` of them, none left over."""
    messages = topic.pull_all(expected)
    assert len(messages) == expected, f"{len(messages)} messages on the topic, expected {expected}"
    assert topic.pull(timeout=1.5) == [], "more messages than expected on the topic"
    return messages


def woo_env(emulators, topic, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "GOOGLE_CLOUD_PROJECT": emulators.project,
        "TIKTOK_PIXEL_CODE": PIXEL,
        "WOOCOMMERCE_SITE_URL": SITE_URL,
        "WOOCOMMERCE_WEBHOOK_SECRET": SECRET,
        "CONSENT_POLICY": "opt-in",
        "PUBSUB_TOPIC": topic.topic,
        "FIRESTORE_COLLECTION_PREFIX": prefix,
        **extra,
    }


def make_app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    source = str(ROOT / "functions" / "woocommerce_webhook" / "main.py")
    return functions_framework.create_app(target="woocommerce_webhook", source=source).test_client()


@pytest.fixture
def webhook(monkeypatch, emulators, topic, store, collection_prefix) -> Webhook:
    return Webhook(make_app(monkeypatch, woo_env(emulators, topic, collection_prefix)), store, topic)


# --- health, ping, methods ---------------------------------------------------------


def test_the_ping_is_exactly_200_and_does_nothing(webhook):
    response = webhook.client.post("/", data=b"webhook_id=5", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert webhook.nothing_published() and webhook.no_claims()


def test_other_methods_are_refused(webhook):
    assert webhook.client.put("/", data=b"{}").status_code == 405


def test_a_misconfigured_function_says_so_without_crashing(monkeypatch, emulators, topic, collection_prefix):
    env = woo_env(emulators, topic, collection_prefix)
    del env["WOOCOMMERCE_WEBHOOK_SECRET"]
    client = make_app(monkeypatch, env)
    body = json.dumps(new_order()).encode()
    response = client.post("/", data=body, headers=headers_for(body, "order.updated"))
    assert response.status_code == 503 and response.get_json()["error"] == "misconfigured"


# --- signatures and sites ------------------------------------------------------------


def test_unsigned_forged_and_unknown_site_deliveries_get_401_and_leave_no_trace(webhook):
    order = new_order()
    webhook.grant(order)
    body = json.dumps(order).encode()
    unsigned = {k: v for k, v in headers_for(body, "order.updated").items() if k != "X-WC-Webhook-Signature"}
    answers = [
        webhook.client.post("/", data=body, headers=unsigned),
        webhook.post(body, secret="not-the-secret"),
        webhook.post(body, headers={"X-WC-Webhook-Signature": "garbage"}),
        webhook.post(body, source="https://other-site.example"),
        webhook.post(body, headers={"X-WC-Webhook-Source": None}),
        # A valid signature of different bytes.
        webhook.post(body, headers={"X-WC-Webhook-Signature": woocommerce_signature(body + b" ", SECRET)}),
    ]
    assert [a.status_code for a in answers] == [401] * 6
    assert all(a.get_json()["error"] == "unauthorized" for a in answers)
    assert webhook.nothing_published() and webhook.no_claims()


def test_a_secret_with_html_entities_is_decoded_before_signing(monkeypatch, emulators, topic, store, collection_prefix):
    # WooCommerce stores "s3cr&amp;t<>" but signs with wp_specialchars_decode()'d "s3cr&t<>".
    env = woo_env(emulators, topic, collection_prefix, WOOCOMMERCE_WEBHOOK_SECRET="s3cr&amp;t&lt;&gt;")
    webhook = Webhook(make_app(monkeypatch, env), store, topic)
    order = new_order()
    webhook.grant(order)
    body = json.dumps(order).encode()
    signed_raw = webhook.post(body, headers={"X-WC-Webhook-Signature": _raw_signature(body, "s3cr&amp;t&lt;&gt;")})
    assert signed_raw.status_code == 401
    assert webhook.post(body, secret="s3cr&amp;t&lt;&gt;").status_code == 200
    assert len(webhook.published()) == 1


def _raw_signature(body: bytes, secret: str) -> str:
    import base64
    import hmac

    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_each_site_selects_its_pixel_secret_and_policy(monkeypatch, emulators, topic, store, collection_prefix):
    tenants = {
        "pixels": {"CPIXA": {"pixel_code": "CPIXA"}, "CPIXB": {"pixel_code": "CPIXB", "consent_policy": "opt-out"}},
        "woocommerce_sites": {
            "https://a.example": {"url": "https://a.example", "pixel_code": "CPIXA"},
            "https://b.example": {"url": "https://b.example", "pixel_code": "CPIXB", "content_id": "sku"},
        },
    }
    secrets = {"a.example": "secret-a", "b.example": "secret-b"}
    env = woo_env(emulators, topic, collection_prefix, PIPELINE_TENANTS=json.dumps(tenants),
                  WOOCOMMERCE_WEBHOOK_SECRET=json.dumps(secrets))  # fmt: skip
    webhook = Webhook(make_app(monkeypatch, env), store, topic)
    order = new_order()
    body = json.dumps(order).encode()
    assert webhook.post(body, source="https://b.example", secret="secret-a").status_code == 401
    answer_a = webhook.post(body, source="https://a.example", secret="secret-a")
    assert answer_a.get_json()["outcome"] == "withheld_consent"  # site A's pixel is opt-in, no grant stored
    answer_b = webhook.post(body, source="https://b.example", secret="secret-b")
    assert answer_b.status_code == 200 and answer_b.get_json()["outcome"] == "published"
    (envelope,) = webhook.published()
    assert envelope["pixel_code"] == "CPIXB"
    assert envelope["event_id"] == f"woocommerce:b.example:order:{order['id']}:Purchase"
    assert envelope["consent"] == "policy_opt_out"
    assert [c.get("content_id") for c in envelope["properties"]["contents"]] == [None, "Bar3"]


# --- the Purchase rules end to end in-process ---------------------------------------


def test_a_paid_order_publishes_one_hashed_purchase_joined_to_the_click(webhook, downstream):
    order = new_order()
    webhook.grant(order, ttclid="E.C.P.click-1", ttp="ttp-1")
    response = webhook.post(order, "order.created")
    assert response.status_code == 200
    assert response.get_json() == {
        "outcome": "published",
        "reason": "Purchase published",
        "event_id": f"woocommerce:{SITE}:order:{order['id']}:Purchase",
    }
    (message,) = webhook.messages(1)
    envelope = decode_message(message)
    assert envelope["source"] == "woocommerce" and envelope["pixel_code"] == PIXEL
    assert envelope["user"]["email"] == [sha("john.doe@example.com")]
    assert (envelope["user"]["ttclid"], envelope["user"]["ttp"]) == ("E.C.P.click-1", "ttp-1")
    assert envelope["user"]["ip"] == "203.0.113.24"
    assert envelope["properties"]["value"] == 29.35 and envelope["properties"]["shop_id"] == SITE
    assert envelope["event_time"] == int(dt.datetime.fromisoformat(order["date_paid_gmt"] + "+00:00").timestamp())
    assert envelope["consent"] == "granted"
    # The order's one claim is the sender's, on the event_id: the receiver wrote nothing.
    assert webhook.no_claims()
    assert downstream.deliver([message]) == ["sent"]
    assert [e["event_id"] for e in downstream.events()] == [envelope["event_id"]]
    assert webhook.store.get(EVENT_CLAIMS, (PIXEL, "Purchase", envelope["event_id"]))["state"] == "sent"


def test_pending_then_processing_then_completed_gives_one_purchase(webhook, downstream):
    order = new_order("pending")
    webhook.grant(order)
    first = webhook.post(order, "order.created")
    assert first.status_code == 200 and first.get_json()["outcome"] == "ignored"
    assert webhook.nothing_published() and webhook.no_claims()
    paid = {
        **order,
        "status": "processing",
        "date_paid_gmt": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
    }
    assert webhook.post(paid).get_json()["outcome"] == "published"
    later = webhook.post({**paid, "status": "completed"})
    # Both published (the receiver claims nothing); the sender's claim on the event_id makes them one.
    assert later.status_code == 200 and later.get_json()["outcome"] == "published"
    messages = webhook.messages(2)
    event_id = f"woocommerce:{SITE}:order:{order['id']}:Purchase"
    assert [decode_message(m)["event_id"] for m in messages] == [event_id] * 2
    assert sorted(downstream.deliver(messages)) == ["duplicate", "sent"]
    assert [e["event_id"] for e in downstream.events()] == [event_id]


def test_twenty_concurrent_duplicates_send_once(webhook, downstream):
    order = new_order()
    webhook.grant(order)
    body = json.dumps(order).encode()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: webhook.post(body), range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert [a.get_json()["outcome"] for a in answers] == ["published"] * 20
    messages = webhook.messages(20)
    event_id = f"woocommerce:{SITE}:order:{order['id']}:Purchase"
    assert {decode_message(m)["event_id"] for m in messages} == {event_id}
    # Pushed all at once, as Pub/Sub does: one claim wins, the other copies are duplicates.
    assert sorted(downstream.deliver(messages)) == ["duplicate"] * 19 + ["sent"]
    assert [e["event_id"] for e in downstream.events()] == [event_id]


@pytest.mark.parametrize("status", ["refunded", "cancelled", "failed"])
def test_refunded_cancelled_failed_orders_never_publish(webhook, status):
    order = new_order(status, date_paid_gmt="2026-01-01T00:00:00")
    webhook.grant(order)
    for wc_topic in ("order.created", "order.updated"):
        response = webhook.post(order, wc_topic)
        assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert webhook.nothing_published() and webhook.no_claims()


def test_without_consent_nothing_is_sent_under_opt_in(webhook):
    order = new_order()
    response = webhook.post(order)
    assert response.status_code == 200 and response.get_json()["outcome"] == "withheld_consent"
    assert webhook.nothing_published()
    # No claim: only the outcome record the report counts, which must not keep a later grant from sending.
    records = [doc.to_dict() for doc in webhook.store.collection(ORDER_EVENTS).stream()]
    assert [(r["outcome"], r["consent"], "state" in r) for r in records] == [("withheld_consent", "no_consent", False)]
    webhook.grant(order)
    assert webhook.post(order).get_json()["outcome"] == "published"
    webhook.exactly_one_published()


def test_checkout_consent_meta_grants_without_a_click_context(webhook):
    order = with_meta(new_order(customer_id=44), _tt_consent="granted", _ttclid="E.C.P.meta")
    assert webhook.post(order).get_json()["outcome"] == "published"
    (envelope,) = webhook.published()
    assert envelope["user"]["ttclid"] == "E.C.P.meta"
    assert envelope["user"]["external_id"] == [sha("44")]


def test_checkout_denial_wins_over_an_earlier_stored_grant(webhook):
    order = with_meta(new_order(), _tt_consent="denied")
    webhook.grant(order)
    assert webhook.post(order).get_json()["outcome"] == "withheld_consent"
    assert webhook.nothing_published()


def test_the_customer_id_joins_when_the_order_key_has_no_context(webhook):
    order = new_order(customer_id=random.randrange(10**6, 10**9))
    webhook.store.put_click_context(PIXEL, [(JOIN_CUSTOMER, str(order["customer_id"]))],
                                    {"consent": {"granted": True}, "ttclid": "E.C.P.cust"}, HOUR)  # fmt: skip
    assert webhook.post(order).get_json()["outcome"] == "published"
    assert webhook.published()[0]["user"]["ttclid"] == "E.C.P.cust"


MALFORMED = [
    (b"not json at all", "order.updated"),
    (b"\xff\xfe\x00garbage", "order.updated"),
    (b"[1, 2, 3]", "order.updated"),
    (b'"a string"', "order.created"),
    (b"{}", "order.updated"),
    (json.dumps({"id": "abc", "status": "processing"}).encode(), "order.updated"),
    (
        json.dumps(
            {
                "id": 5,
                "status": "processing",
                "billing": "x",
                "line_items": {"a": 1},
                "meta_data": 7,
                "total": {"x": 1},
                "currency": 3,
                "date_paid_gmt": 12,
            }
        ).encode(),
        "order.updated",
    ),  # fmt: skip
    (json.dumps({"id": 6, "status": ["processing"]}).encode(), "order.updated"),
    (json.dumps({"id": 7}).encode(), "order.deleted"),
    (json.dumps({"id": 8, "status": "processing"}).encode(), ""),
]


@pytest.mark.parametrize(("body", "wc_topic"), MALFORMED)
def test_malformed_bodies_from_a_valid_signer_get_a_2xx_with_a_reason(webhook, body, wc_topic):
    response = webhook.post(body, wc_topic)
    assert 200 <= response.status_code < 300
    assert response.get_json()["reason"]


def test_logs_never_carry_raw_personal_data(webhook, capsys):
    order = with_meta(new_order(), _tt_consent="granted")
    webhook.post(order)
    webhook.post(order, secret="wrong")
    webhook.post({**order, "id": None})
    out = capsys.readouterr().out
    assert '"outcome": "published"' in out and '"outcome": "rejected"' in out
    assert not [pii for pii in RAW_PII if pii in out]


# --- outages: Firestore or Pub/Sub unreachable -------------------------------------------


@contextmanager
def emulator_host_pointing_nowhere(variable: str) -> Iterator[None]:
    """Clients created inside talk to a closed port (nothing listens there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    saved = os.environ[variable]
    os.environ[variable] = f"127.0.0.1:{closed_port}"
    try:
        yield
    finally:
        os.environ[variable] = saved


@dataclass
class Outage:
    healthy: Runtime
    handle: Callable[..., Reply]
    store: Store
    topic: Any


def make_runtime(emulators, topic, prefix: str, *, store: Any, publisher: Any) -> Runtime:
    from shared.receive.woocommerce.settings import WooCommerceSettings

    settings = WooCommerceSettings.from_env(woo_env(emulators, topic, prefix))
    tenants = settings.tenants()
    return Runtime(tenants, settings.sites(tenants), store=store, publisher=publisher,
                   firestore_seconds=1.0, publish_seconds=2.0)  # fmt: skip


@pytest.fixture
def healthy(emulators, topic, store, event_publisher, collection_prefix) -> Runtime:
    return make_runtime(emulators, topic, collection_prefix, store=store, publisher=event_publisher)


@pytest.fixture
def firestore_down(emulators, topic, event_publisher, collection_prefix) -> Runtime:
    with emulator_host_pointing_nowhere("FIRESTORE_EMULATOR_HOST"):
        broken = Store(make_client(emulators.project), collection_prefix)
    return make_runtime(emulators, topic, collection_prefix, store=broken, publisher=event_publisher)


@pytest.fixture
def pubsub_down(emulators, topic, store, collection_prefix) -> Runtime:
    with emulator_host_pointing_nowhere("PUBSUB_EMULATOR_HOST"):
        broken = EventPublisher(make_publisher_client(), emulators.project, topic.topic)
    return make_runtime(emulators, topic, collection_prefix, store=store, publisher=broken)


def deliver_to(runtime: Runtime, order: dict, topic: str = "order.updated") -> Reply:
    body = json.dumps(order).encode()
    reply = handle(headers_for(body, topic), body, lambda: runtime)
    if reply.outcome:  # the outcome line, as the function's entry point logs it
        reply.outcome.log()
    return reply


def parked_from(out: str) -> list[dict]:
    return list(parked_records(out))


def test_firestore_down_without_checkout_consent_parks_the_hashed_order_and_replay_sends_it(
    firestore_down, healthy, store, topic, downstream, capsys
):
    order = new_order()
    store.put_click_context(PIXEL, [(JOIN_WOO_ORDER_KEY, order["order_key"])], {"consent": {"granted": True}}, HOUR)
    reply = deliver_to(firestore_down, order)
    assert reply.status == 202 and reply.body["outcome"] == "parked"
    assert topic.pull(timeout=1.5) == []
    out = capsys.readouterr().out
    assert not [pii for pii in RAW_PII if pii in out]
    (record,) = parked_from(out)
    assert record["kind"] == "order"

    first = flow.replay(record, healthy)
    assert first.kind == "published" and first.event_id == reply.body["event_id"]
    # Replaying twice is safe: both publish the same event_id, and the sender sends it once.
    assert flow.replay(record, healthy).kind == "published"
    messages = exactly(topic, 2)
    assert [decode_message(m)["event_id"] for m in messages] == [reply.body["event_id"]] * 2
    assert decode_message(messages[0])["user"]["email"] == [sha("john.doe@example.com")]
    assert sorted(downstream.deliver(messages)) == ["duplicate", "sent"]
    (event,) = downstream.events()
    assert event["event_id"] == reply.body["event_id"] and event["user"]["email"] == [sha("john.doe@example.com")]


def test_firestore_down_with_checkout_consent_publishes_without_the_click_context(firestore_down, topic):
    order = with_meta(new_order(), _tt_consent="granted")
    reply = deliver_to(firestore_down, order)
    assert reply.status == 200 and reply.body["outcome"] == "published"
    (message,) = topic.pull_all(1)
    assert decode_message(message)["event_id"] == reply.body["event_id"]


def test_pubsub_down_parks_the_envelope_leaves_no_claim_and_replay_publishes_it(
    pubsub_down, healthy, store, topic, capsys
):
    order = new_order()
    store.put_click_context(PIXEL, [(JOIN_WOO_ORDER_KEY, order["order_key"])], {"consent": {"granted": True}}, HOUR)
    reply = deliver_to(pubsub_down, order)
    assert reply.status == 202 and reply.body["outcome"] == "parked"
    assert store.get(ORDER_EVENTS, ("woocommerce", SITE, str(order["id"]), "Purchase")) is None
    (record,) = parked_from(capsys.readouterr().out)
    assert record["kind"] == "envelope" and record["envelope"]["consent"] == "granted"
    assert flow.replay(record, healthy).kind == "published"
    (message,) = topic.pull_all(1)
    assert decode_message(message) == record["envelope"]


def test_both_down_still_answers_2xx_and_parks(emulators, topic, collection_prefix, capsys):
    with emulator_host_pointing_nowhere("FIRESTORE_EMULATOR_HOST"):
        broken_store = Store(make_client(emulators.project), collection_prefix)
    with emulator_host_pointing_nowhere("PUBSUB_EMULATOR_HOST"):
        broken_publisher = EventPublisher(make_publisher_client(), emulators.project, topic.topic)
    runtime = make_runtime(emulators, topic, collection_prefix, store=broken_store, publisher=broken_publisher)
    for order in (new_order(), with_meta(new_order(), _tt_consent="granted")):
        assert deliver_to(runtime, order).status == 202
    kinds = sorted(r["kind"] for r in parked_from(capsys.readouterr().out))
    assert kinds == ["envelope", "order"]


def test_replay_command_reads_log_lines_and_publishes(
    pubsub_down, monkeypatch, emulators, topic, collection_prefix, store, capsys
):
    order = with_meta(new_order(), _tt_consent="granted")
    assert deliver_to(pubsub_down, order).status == 202
    log_output = capsys.readouterr().out
    for name, value in woo_env(emulators, topic, collection_prefix).items():
        monkeypatch.setenv(name, value)
    from functions.woocommerce_webhook import replay

    monkeypatch.setattr("sys.stdin", io.StringIO(log_output))
    assert replay.main([]) == 0
    (message,) = topic.pull_all(1)
    assert decode_message(message)["event_id"] == f"woocommerce:{SITE}:order:{order['id']}:Purchase"
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"records": 1, "failed": 0}


def test_replay_dry_run_lists_parked_records_without_publishing(firestore_down, topic, monkeypatch, capsys):
    order = new_order()
    assert deliver_to(firestore_down, order).status == 202
    log_output = capsys.readouterr().out
    from functions.woocommerce_webhook import replay

    monkeypatch.setattr("sys.stdin", io.StringIO("garbage\n" + log_output))
    assert replay.main(["--dry-run"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert listed == [{"kind": "order", "event_id": f"woocommerce:{SITE}:order:{order['id']}:Purchase"}]
    assert topic.pull(timeout=1.5) == []


def test_a_bug_after_the_signature_check_parks_the_order_without_quoting_it(healthy, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("mapping bug near john.doe@example.com")

    monkeypatch.setattr(flow, "process_order_event", broken)
    reply = deliver_to(healthy, with_meta(new_order(), _tt_consent="granted"))
    assert reply.status == 202 and reply.body["reason"].startswith("internal error (RuntimeError)")
    out = capsys.readouterr().out
    assert "mapping bug" not in out and "john.doe" not in out
    (record,) = parked_from(out)
    assert record["kind"] == "order" and record["consent"] == {"granted": True}


def test_a_claim_still_being_sent_by_a_hung_attempt_is_sent_anyway(webhook, downstream):
    """A delivery hung mid-way must not cost the Purchase: WooCommerce never retries.

    The only claim is now the sender's. An attempt that claimed the event_id and
    then hung holds it for its lease: the delivery arriving meanwhile is
    published at once (no wait, no 503), its copy is answered ``retry`` while the
    lease holds and sent once it is over.
    """
    order = new_order()
    webhook.grant(order)
    event_id = f"woocommerce:{SITE}:order:{order['id']}:Purchase"
    lease = dt.timedelta(seconds=2)
    hung = ClaimStore(webhook.store, lease, dt.timedelta(days=8), dt.timedelta(days=30), counters=Counters())
    assert webhook.post(order).get_json()["outcome"] == "published"
    (first,) = webhook.messages(1)
    envelope = Envelope.model_validate(decode_message(first))
    assert hung.claim([(envelope, "hung")])[envelope.claim_key()].state == "claimed"  # and never sends
    started = time.monotonic()
    response = webhook.post(order)
    assert response.status_code == 200 and response.get_json()["outcome"] == "published"
    assert time.monotonic() - started < 1.0  # the receiver no longer waits for anyone
    (second,) = webhook.messages(1)
    assert downstream.deliver([second]) == ["sent"]
    assert time.monotonic() - started >= lease.total_seconds() * 0.9  # sent only once the hung lease was over
    assert [e["event_id"] for e in downstream.events()] == [event_id]
    claim = webhook.store.get(EVENT_CLAIMS, envelope.claim_key())
    assert (claim["state"], claim["attempts"]) == ("sent", 2)  # taken over from the hung attempt


def test_an_orphaned_claim_is_taken_over(webhook, downstream):
    """An orphaned receiver claim can no longer hold a Purchase back.

    The receiver claims nothing, so a delivery that dies before its publish
    leaves nothing behind (test_pubsub_down_parks_the_envelope_leaves_no_claim...)
    and one that dies after it leaves a message that the next copy duplicates
    at the sender (test_a_publish_that_lands_after_the_budget...). What is left
    to prove: a "publishing" claim orphaned in order_events by a receiver from
    before the upgrade is ignored; the next delivery publishes, and a later one
    is a duplicate at the sender, not a second Purchase.
    """
    order = new_order()
    webhook.grant(order)
    key = ("woocommerce", SITE, str(order["id"]), "Purchase")
    assert webhook.store.claim_once(ORDER_EVENTS, key, HOUR, state="publishing")
    webhook.store.mark(ORDER_EVENTS, key, created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    assert webhook.post(order).get_json()["outcome"] == "published"
    (message,) = webhook.messages(1)
    assert downstream.deliver([message]) == ["sent"]
    event_id = decode_message(message)["event_id"]
    assert webhook.store.get(EVENT_CLAIMS, (PIXEL, "Purchase", event_id))["state"] == "sent"
    assert webhook.post(order).get_json()["outcome"] == "published"
    assert downstream.deliver(webhook.messages(1)) == ["duplicate"]
    assert [e["event_id"] for e in downstream.events()] == [event_id]


def test_a_publish_that_lands_after_the_budget_and_its_replay_give_one_purchase(
    emulators, topic, store, event_publisher, collection_prefix, healthy, downstream, capsys
):
    """A crash (here: the publish wait running out) after the publish landed loses nothing and doubles nothing.

    The delivery is parked, since it can not know the message landed; its
    replay publishes a second copy of the same event_id, which the sender
    answers ``duplicate``.
    """

    class LandsLate:
        def publish(self, envelopes: list[Any]) -> list[str]:
            ids = event_publisher.publish(envelopes)
            time.sleep(1.5)  # past the budget: the answer never comes back in time
            return ids

    slow = make_runtime(emulators, topic, collection_prefix, store=store, publisher=LandsLate())
    slow.publish_seconds = 0.5
    order = new_order()
    store.put_click_context(PIXEL, [(JOIN_WOO_ORDER_KEY, order["order_key"])], {"consent": {"granted": True}}, HOUR)
    reply = deliver_to(slow, order)
    assert reply.status == 202 and reply.body["outcome"] == "parked"
    (record,) = parked_from(capsys.readouterr().out)
    assert flow.replay(record, healthy).kind == "published"
    messages = exactly(topic, 2)
    assert [decode_message(m)["event_id"] for m in messages] == [reply.body["event_id"]] * 2
    assert sorted(downstream.deliver(messages)) == ["duplicate", "sent"]
    assert [e["event_id"] for e in downstream.events()] == [reply.body["event_id"]]

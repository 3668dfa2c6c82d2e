"""The signed-orders function in-process, against the real Firestore and Pub/Sub emulators.

Each test gets its own collection prefix and topic (conftest's ``store`` and ``topic``) and runs
the real ``functions/signed_orders/main.py`` through functions-framework's test client; the
messages it published are pushed through the real sender (conftest's ``downstream``) to count
what TikTok got. The receiver claims nothing but used signatures: the sender's claim on the
order's deterministic event_id makes every copy one event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import functions_framework
import pytest

from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS
from shared.sources.signed_orders.signature import sign
from tests.conftest import decode_message
from tests.helpers import ROOT
from tests.unit.test_signed_orders_schema import RAW_PII, signed_order

SITE, SECRET, PIXEL = "shop.emulator.test", "emulator-signed-secret", "CSIGNEDEMUL01"
HOUR = dt.timedelta(hours=1)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fresh(**changes: Any) -> dict[str, Any]:
    """The documented order with its own id and checkout id (no consent of its own unless given)."""
    tag = uuid.uuid4().hex
    order = signed_order(order_id=f"T-{tag[:12]}", join_keys={"signed_orders_checkout": f"chk_{tag}"}, consent=None)
    order.update(changes)
    return order


def purchase_id(order: dict[str, Any]) -> str:
    return f"signed_orders:{SITE}:order:{order['order_id']}:Purchase"


@dataclass
class Endpoint:
    client: Any
    store: Any
    topic: Any

    def post(self, order: dict[str, Any] | bytes, *, at: int | None = None, header: str | None = None) -> Any:
        body = order if isinstance(order, bytes) else json.dumps(order).encode()
        signature = header or sign(body, SECRET, int(time.time()) if at is None else at)
        headers = {"Content-Type": "application/json", "Pipeline-Site": SITE, "Pipeline-Signature": signature}
        return self.client.post("/", data=body, headers=headers)

    def grant(self, order: dict[str, Any], **context: Any) -> None:
        """What collect stores for a consenting shopper under the checkout id the page gave collect.js."""
        key = ("signed_orders_checkout", order["join_keys"]["signed_orders_checkout"])
        self.store.put_click_context(PIXEL, [key], {"consent": {"granted": True}, **context}, HOUR)

    def published(self, expected: int) -> list[Any]:
        messages = self.topic.pull_all(expected)
        assert len(messages) == expected, f"{len(messages)} messages on the topic, expected {expected}"
        assert self.topic.pull(timeout=1.5) == [], "more messages than expected on the topic"
        return messages


def env(emulators, topic, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "GOOGLE_CLOUD_PROJECT": emulators.project,
        "TIKTOK_PIXEL_CODE": PIXEL,
        "SIGNED_ORDERS_SITE": SITE,
        "SIGNED_ORDERS_SECRET": SECRET,
        "CONSENT_POLICY": "opt-in",
        "PUBSUB_TOPIC": topic.topic,
        "FIRESTORE_COLLECTION_PREFIX": prefix,
        **extra,
    }


def make_client(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> Any:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    source = str(ROOT / "functions" / "signed_orders" / "main.py")
    return functions_framework.create_app(target="signed_orders", source=source).test_client()


@pytest.fixture
def endpoint(monkeypatch, emulators, topic, store, collection_prefix) -> Endpoint:
    return Endpoint(make_client(monkeypatch, env(emulators, topic, collection_prefix)), store, topic)


def test_get_is_the_health_check_and_other_methods_are_refused(endpoint):
    assert endpoint.client.get("/").get_json() == {"status": "ok"}
    assert endpoint.client.put("/", data=b"{}").status_code == 405


def test_a_consented_order_reaches_tiktok_once_with_its_click_joined(endpoint, downstream):
    order = fresh()
    endpoint.grant(order, ttclid="E.C.P.emulator-click")
    answer = endpoint.post(order)
    assert answer.status_code == 200
    assert answer.get_json() == {"outcome": "published", "event_id": purchase_id(order), "reason": "Purchase published"}
    (message,) = endpoint.published(1)
    envelope = decode_message(message)
    assert (
        envelope["user"]["email"] == [sha(RAW_PII[0].lower())] and envelope["user"]["ttclid"] == "E.C.P.emulator-click"
    )
    assert not [raw for raw in RAW_PII[:5] if raw in message.data.decode()]
    assert downstream.deliver([message]) == ["sent"]
    (event,) = downstream.events(event_id=purchase_id(order))
    assert event["properties"]["order_id"] == order["order_id"]


def test_twenty_concurrent_fresh_signings_of_one_order_send_one_event(endpoint, downstream):
    order = fresh(consent={"marketing": "granted"})
    bodies = [json.dumps({**order, "value": 59.9}).encode()] * 20
    # Twenty different signings (each its own t); the seconds repeat, so each body differs by a space.
    signed = [(b + b" " * i, int(time.time()) - i) for i, b in enumerate(bodies)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda s: endpoint.post(s[0], at=s[1]), signed))
    assert [a.get_json()["outcome"] for a in answers] == ["published"] * 20
    published = endpoint.published(20)
    assert sorted(downstream.deliver(published)) == ["duplicate"] * 19 + ["sent"]
    assert len(downstream.events(event_id=purchase_id(order))) == 1
    assert endpoint.store.get(EVENT_CLAIMS, (PIXEL, "Purchase", purchase_id(order)))["state"] == "sent"


def test_a_replayed_request_is_a_409_and_publishes_nothing_more(endpoint):
    order = fresh(consent={"marketing": "granted"})
    body = json.dumps(order).encode()
    header = sign(body, SECRET, int(time.time()))
    assert endpoint.post(body, header=header).status_code == 200
    with ThreadPoolExecutor(max_workers=5) as pool:  # replayed at once: the claim is atomic
        replays = list(pool.map(lambda _: endpoint.post(body, header=header), range(5)))
    assert [r.status_code for r in replays] == [409] * 5
    assert "sign each attempt anew" in replays[0].get_json()["reason"]
    endpoint.published(1)


def test_a_stale_signature_is_a_401_that_leaves_nothing(endpoint):
    order = fresh(consent={"marketing": "granted"})
    answer = endpoint.post(order, at=int(time.time()) - 3600)
    assert answer.status_code == 401 and "timestamp outside the tolerance" in answer.get_json()["reason"]
    assert endpoint.topic.pull(timeout=1.5) == []
    assert list(endpoint.store.collection(ORDER_EVENTS).limit(1).stream()) == []


def test_a_cancelled_order_before_its_purchase_means_no_purchase(endpoint, downstream):
    order = fresh(consent={"marketing": "granted"})
    cancelled = endpoint.post({**order, "status": "cancelled"})
    assert cancelled.get_json()["outcome"] == "skipped" and cancelled.get_json()["event_id"] == purchase_id(order)
    assert endpoint.post(order).get_json()["outcome"] == "published"
    assert downstream.deliver(endpoint.published(1)) == ["skipped"]
    assert downstream.events() == []


def test_no_consent_is_withheld_and_recorded_for_the_report(endpoint):
    order = fresh()
    answer = endpoint.post(order)
    assert answer.get_json()["outcome"] == "withheld_consent"
    assert endpoint.store.get(ORDER_EVENTS, ("outcome", purchase_id(order)))["outcome"] == "withheld_consent"
    assert endpoint.topic.pull(timeout=1.5) == []


def test_a_misconfigured_function_says_so_without_crashing(monkeypatch, emulators, topic, collection_prefix):
    settings = env(emulators, topic, collection_prefix)
    del settings["SIGNED_ORDERS_SECRET"]
    client = make_client(monkeypatch, settings)
    answer = client.post("/", data=b"{}", headers={"Pipeline-Site": SITE, "Pipeline-Signature": "t=1,v1=00"})
    assert answer.status_code == 503 and answer.get_json()["error"] == "misconfigured"


def test_a_body_over_the_limit_is_a_413_before_the_signature(
    endpoint, monkeypatch, emulators, topic, collection_prefix
):
    client = make_client(monkeypatch, env(emulators, topic, collection_prefix, SIGNED_ORDERS_MAX_BODY_BYTES="16384"))
    body = json.dumps(fresh(padding="x" * 20_000)).encode()
    answer = client.post("/", data=body, headers={"Pipeline-Site": SITE, "Pipeline-Signature": sign(body, SECRET, 1)})
    assert answer.status_code == 413 and "16384" in answer.get_json()["reason"]


@pytest.mark.parametrize("variable", ["FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"])
def test_an_unreachable_dependency_is_a_503_and_the_fresh_retry_is_published(
    monkeypatch, emulators, topic, store, collection_prefix, downstream, variable
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    healthy = env(emulators, topic, collection_prefix)
    monkeypatch.setenv(variable, f"127.0.0.1:{closed}")
    down = make_client(monkeypatch, healthy)
    sys.modules["main"].runtime().io_seconds = 1.5  # the module functions-framework just loaded
    order = fresh(consent={"marketing": "granted"})
    body = json.dumps(order).encode()
    answer = down.post(
        "/", data=body, headers={"Pipeline-Site": SITE, "Pipeline-Signature": sign(body, SECRET, int(time.time()))}
    )
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.get_json()["reason"].startswith(("firestore unavailable", "pubsub unavailable"))
    monkeypatch.setenv(variable, emulators.env[variable])
    up = Endpoint(make_client(monkeypatch, healthy), store, topic)
    time.sleep(1.01)  # signed anew: a new t
    assert up.post(order).get_json()["outcome"] == "published"
    messages = topic.pull_all(2, timeout=5)  # a publish that landed late would be a second copy of the same event
    assert {decode_message(m)["event_id"] for m in messages} == {purchase_id(order)}
    downstream.deliver(messages)
    assert len(downstream.events(event_id=purchase_id(order))) == 1

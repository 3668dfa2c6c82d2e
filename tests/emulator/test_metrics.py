"""Instance counters: counted where Firestore and Pub/Sub are called, served on GET /metrics only when asked."""

from __future__ import annotations

import datetime as dt

import functions_framework
import pytest

from shared.domain.models import Envelope
from shared.infra.metrics import COUNTERS, Counters, metrics_reply
from tests.helpers import ROOT

HOUR = dt.timedelta(hours=1)


def delta(before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in COUNTERS.snapshot().items() if v != before.get(k, 0)}


def test_counters_add_up_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    counters = Counters()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: counters.add("x", 2), range(1000)))
    assert counters.snapshot() == {"x": 2000}


def test_the_store_counts_the_documents_firestore_bills(store):
    before = COUNTERS.snapshot()
    store.put_click_contexts([("PIX", [("cart", "a"), ("customer", "1")], {"ttp": "t"}, HOUR),
                              ("PIX", [("cart", "b")], {"ttp": "u"}, HOUR)])  # fmt: skip
    assert delta(before) == {"firestore.rpcs": 1, "firestore.writes": 3}
    before = COUNTERS.snapshot()
    # The first join key is read alone; when it finds the context, that is the order's only read.
    assert store.find_click_context("PIX", [("cart", "a"), ("cart", "b"), ("cart", "missing")])["ttp"] == "t"
    assert delta(before) == {"firestore.rpcs": 1, "firestore.reads": 1}
    before = COUNTERS.snapshot()
    # When it misses, the others are read together: every document read is still counted.
    assert store.find_click_context("PIX", [("cart", "missing"), ("cart", "b"), ("cart", "a")])["ttp"] == "u"
    assert delta(before) == {"firestore.rpcs": 2, "firestore.reads": 3}
    before = COUNTERS.snapshot()
    assert store.claim_once("order_events", ("k", 1), HOUR)
    assert not store.claim_once("order_events", ("k", 1), HOUR)  # create refused, then the existing one read
    assert delta(before) == {"firestore.rpcs": 3, "firestore.writes": 2, "firestore.reads": 1}


def test_the_publisher_counts_messages_and_their_bytes(event_publisher):
    envelope = Envelope(source="collect", pixel_code="PIX", event="ViewContent", event_id="m-1",
                        event_time=1_700_000_000, consent="granted")  # fmt: skip
    before = COUNTERS.snapshot()
    event_publisher.publish([envelope, envelope.model_copy(update={"event_id": "m-2"})])
    counted = delta(before)
    assert counted["pubsub.messages"] == 2
    assert counted["pubsub.bytes"] == 2 * len(envelope.to_json_bytes())


@pytest.mark.parametrize("value", [None, "", "0", "false"])
def test_receivers_hide_their_counters_unless_told(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("EXPOSE_METRICS", raising=False)
    else:
        monkeypatch.setenv("EXPOSE_METRICS", value)
    assert metrics_reply("/metrics")[1] == 404
    assert metrics_reply("/healthz") is None


@pytest.mark.parametrize("name", ["collect", "shopify_webhook", "woocommerce_webhook"])
def test_each_receiver_serves_get_metrics_when_exposed(monkeypatch, name):
    monkeypatch.setenv("EXPOSE_METRICS", "true")
    COUNTERS.add("firestore.writes", 0)
    app = functions_framework.create_app(target=name, source=str(ROOT / "functions" / name / "main.py"))
    client = app.test_client()
    response = client.get("/metrics")
    assert response.status_code == 200 and response.get_json()["counters"] == COUNTERS.snapshot()
    assert client.get("/").get_json() == {"status": "ok"}
    monkeypatch.setenv("EXPOSE_METRICS", "false")
    assert client.get("/metrics").status_code == 404

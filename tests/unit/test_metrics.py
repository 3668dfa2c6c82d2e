"""Counters add up across threads; each receiver serves them on GET /metrics only when told to."""

from __future__ import annotations

import functions_framework
import pytest

from shared.infra.metrics import COUNTERS, Counters, metrics_reply
from tests.helpers import ROOT


def test_counters_add_up_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    counters = Counters()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: counters.add("x", 2), range(1000)))
    assert counters.snapshot() == {"x": 2000}


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

"""The shopify_pubsub entry point without the emulators: an unreadable trigger time refuses nothing, a
misconfigured function answers 503.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

import functions_framework
import pytest

from shared.config import DEFAULT_SHOPIFY_API_VERSION
from shared.receive.shopify.routing import stale_delivery
from tests.conftest import push_body
from tests.emulator.test_shopify_webhook import PIXEL
from tests.helpers import ROOT
from tests.unit.test_shopify_mapping import SHOP

MAIN = str(ROOT / "functions" / "shopify_webhook" / "main.py")


def attributes(topic: str | None = "orders/paid", shop: str | None = SHOP, **extra: str) -> dict[str, str]:
    """The attributes Shopify sets on a webhook message: its HTTPS headers, without the HMAC."""
    sent = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        **extra,
    }
    return {k: v for k, v in sent.items() if v is not None}


@pytest.mark.parametrize("value", ["yesterday", "", "2026-13-45T00:00:00Z", "9" * 40])
def test_an_unreadable_trigger_time_refuses_nothing(value):
    assert stale_delivery(value, int(time.time()), dt.timedelta(days=7)) is None


def test_a_misconfigured_function_answers_503_so_messages_wait(monkeypatch, capsys):
    monkeypatch.delenv("SHOPIFY_SHOP_DOMAIN", raising=False)
    monkeypatch.delenv("PIPELINE_TENANTS", raising=False)
    monkeypatch.setenv("TIKTOK_PIXEL_CODE", PIXEL)
    app = functions_framework.create_app(target="shopify_pubsub", source=MAIN).test_client()
    response = app.post("/", json=push_body(b"{}", "m-conf", attributes()))
    assert response.status_code == 503
    assert "shopify_pubsub is misconfigured" in capsys.readouterr().out

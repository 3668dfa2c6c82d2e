"""Every receiver answers its health check (and WooCommerce its setup ping) without settings or storage."""

from __future__ import annotations

import functions_framework

from tests.helpers import ROOT


def test_collect_answers_its_health_check_without_settings_or_storage():
    app = functions_framework.create_app(target="collect", source=str(ROOT / "functions" / "collect" / "main.py"))
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_shopify_answers_its_health_check_without_settings_or_storage(monkeypatch):
    app = functions_framework.create_app(
        target="shopify_webhook", source=str(ROOT / "functions" / "shopify_webhook" / "main.py")
    )
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_woocommerce_answers_health_and_ping_200_without_any_settings():
    source = str(ROOT / "functions" / "woocommerce_webhook" / "main.py")
    # No pixel, no site, no secret: the ping must still pass.
    client = functions_framework.create_app(target="woocommerce_webhook", source=source).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/anything").get_json() == {"status": "ok"}
    ping = client.post("/", data=b"webhook_id=17", content_type="application/x-www-form-urlencoded")
    assert ping.status_code == 200

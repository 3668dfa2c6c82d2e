"""Hostile inputs that once got a 5xx, each sent once to the running stack: none may answer a 5xx.

The fuzz (test_fuzz.py) searches at random; these are the known killers,
kept as fixed cases so that each stays fixed: huge integers and ``1e999``
(collect), Unicode digits, 310-digit totals, 1,000-deep arrays and lone
surrogates in signed WooCommerce orders (which WooCommerce never retries, so
they must be answered 4xx or 2xx with a real decision, never a silent
"error"), lone surrogates in a signed Shopify order's logged fields (a 503
there repeats on every retry), and deep JSON or a surrogate in the sender's
envelope. Bodies are written as JSON text, as an attacker would send them.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.reliability import harness

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

DEEP = "[" * 1000 + "]" * 1000
BIG_INT = "1" * 4400


def _splice(document: dict[str, Any], path: tuple, raw: str) -> bytes:
    """``document`` as JSON with the value at ``path`` replaced by the raw JSON text ``raw``."""
    marker = f"__raw_{uuid.uuid4().hex}__"
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = marker
    return json.dumps(document).replace(json.dumps(marker), raw).encode()


def _collect(pixel: str) -> dict[str, Any]:
    return harness.collect_document(pixel, f"rel-hostile-{uuid.uuid4().hex}")


COLLECT_CASES: dict[str, tuple[tuple, str]] = {
    "4400-digit integer as a property value": (("events", 0, "properties", "value"), BIG_INT),
    "4400-digit integer in a custom property": (("events", 0, "properties", "quantity"), BIG_INT),
    "event_time 1e999": (("events", 0, "event_time"), "1e999"),
    "event_time -1e999": (("events", 0, "event_time"), "-1e999"),
    "event_time NaN": (("events", 0, "event_time"), "NaN"),
    "value Infinity": (("events", 0, "properties", "value"), "Infinity"),
    "arrays 1000 deep in a custom property": (("events", 0, "properties", "tags"), DEEP),
    "lone surrogate in the page url": (("context", "page_url"), '"https://x.test/\\ud800"'),
    "lone surrogate in an event id": (("events", 0, "event_id"), '"evt-\\udfff"'),
}


@pytest.mark.parametrize("case", COLLECT_CASES)
def test_collect_refuses_known_killers_without_a_5xx(rstack, http, case):
    path, raw = COLLECT_CASES[case]
    body = _splice(_collect(rstack.settings["TIKTOK_PIXEL_CODE"]), path, raw)
    response = http.post(rstack.url("collect") + "/", content=body, headers=harness.collect_headers("198.18.201.1"),
                         timeout=15)  # fmt: skip
    assert response.status_code < 500, (case, response.status_code, response.text[:300])


WOO_CASES: dict[str, tuple[tuple, str]] = {
    "Unicode digit as the order id": (("id",), '"\\u00b2"'),
    "Unicode digits as a quantity": (("line_items", 0, "quantity"), '"\\u0663"'),
    "Unicode digit as a product id": (("line_items", 0, "product_id"), '"\\u00b2"'),
    "310-digit total": (("total",), '"' + "9" * 310 + '"'),
    "310-digit integer total": (("total",), "9" * 310),
    "4400-digit integer id": (("id",), BIG_INT),
    "arrays 1000 deep in meta_data": (("meta_data",), DEEP),
    "lone surrogate in the billing email": (("billing", "email"), '"a\\ud800@example.com"'),
    "lone surrogate in the user agent": (("customer_user_agent",), '"Mozilla \\udc00"'),
    "lone surrogate as the order key": (("order_key",), '"wc_order_\\ud800"'),
    "total 1e999": (("total",), "1e999"),
}


@pytest.mark.parametrize("case", WOO_CASES)
def test_woocommerce_answers_known_killers_with_a_decision_not_a_5xx(rstack, http, case):
    path, raw = WOO_CASES[case]
    body = _splice(harness.woocommerce_order(), path, raw)
    headers = harness.woocommerce_headers(body, rstack.settings)
    response = http.post(rstack.url("woocommerce_webhook") + "/", content=body, headers=headers, timeout=60)
    assert response.status_code < 500, (case, response.status_code, response.text[:300])
    if response.status_code < 300:
        # WooCommerce never retries: a 2xx must be published, parked, ignored, a duplicate... never a silent "error".
        assert response.json().get("outcome") != "error", (case, response.text[:300])


SHOPIFY_CASES: dict[str, tuple[tuple, str]] = {
    "lone surrogate in the user agent": (("client_details", "user_agent"), '"Mozilla \\ud800"'),
    "lone surrogate in landing_site": (("landing_site",), '"/products/x?\\udfff"'),
    "lone surrogate in referring_site": (("referring_site",), '"https://ref.test/\\ud800"'),
    "4400-digit integer total": (("total_price",), BIG_INT),
    "total 1e999": (("total_price",), "1e999"),
    "arrays 1000 deep in note_attributes": (("note_attributes",), DEEP),
    "Unicode digit as a quantity": (("line_items", 0, "quantity"), '"\\u00b2"'),
}


@pytest.mark.parametrize("case", SHOPIFY_CASES)
def test_shopify_answers_known_killers_without_a_5xx(rstack, http, case):
    path, raw = SHOPIFY_CASES[case]
    order = harness.shopify_order()
    order["client_details"] = {"browser_ip": "203.0.113.24", "user_agent": "Mozilla/5.0"}  # null in the fixture
    body = _splice(order, path, raw)
    headers = harness.shopify_headers(body, rstack.settings, "orders/paid", str(uuid.uuid4()))
    response = http.post(rstack.url("shopify_webhook") + "/", content=body, headers=headers, timeout=15)
    # A 503 here would repeat on each of Shopify's retries; an authenticated delivery gets its answer now.
    assert response.status_code < 500, (case, response.status_code, response.text[:300])


def _push(data: bytes) -> bytes:
    message = {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex, "attributes": {},
               "publishTime": "2026-11-24T00:00:00Z"}  # fmt: skip
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


def _envelope_text(rstack, **raw: str) -> bytes:
    envelope = {
        "source": "shopify", "pixel_code": rstack.settings["TIKTOK_PIXEL_CODE"], "event": "Purchase",
        "event_id": f"rel-hostile:{uuid.uuid4().hex}", "event_time": 1_790_000_000,
        "user": {"email": ["a" * 64]}, "properties": {"currency": "EUR", "value": 1}, "consent": "granted",
    }  # fmt: skip
    text = json.dumps(envelope)
    for key, value in raw.items():
        text = text.replace(json.dumps(envelope[key]), value, 1)
    return text.encode()


SENDER_CASES: dict[str, Callable[[Any], bytes]] = {
    "envelope nested 100,000 deep": lambda rs: _push(b"[" * 100_000 + b"]" * 100_000),
    "lone surrogate in pixel_code": lambda rs: _push(_envelope_text(rs, pixel_code='"C\\ud800"')),
    "4400-digit event_time": lambda rs: _push(_envelope_text(rs, event_time=BIG_INT)),
    "event_time 1e999": lambda rs: _push(_envelope_text(rs, event_time="1e999")),
    "data that is not base64": lambda rs: json.dumps({"message": {"data": "%%%", "messageId": "x"}}).encode(),
    "push body nested 100,000 deep": lambda rs: b'{"message":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "push body that is not JSON": lambda rs: b"\x00\x00\x00\x00\x00",
    "push body that is a JSON string": lambda rs: b'"0"',
}


@pytest.mark.parametrize("case", SENDER_CASES)
def test_the_sender_answers_known_killers_without_a_5xx(rstack, http, case):
    body = SENDER_CASES[case](rstack)
    try:
        response = http.post(rstack.url("sender") + "/", content=body, headers={"Content-Type": "application/json"},
                             timeout=30)  # fmt: skip
    except httpx.HTTPError as exc:  # a crashed worker cuts the connection
        pytest.fail(f"{case}: {type(exc).__name__}, the sender's worker died")
    assert response.status_code < 500, (case, response.status_code, response.text[:300])

"""The collect endpoint end to end in the local stack: collect process -> Pub/Sub push -> sender -> sandbox.

The stack is shared by the whole session, so each test isolates itself by
unique event ids and join keys, never by clearing anything.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from shared.receive.orders import JOIN_SHOPIFY_CART
from tests.helpers import sandbox_events, wait_for_sandbox_events, wait_until

pytestmark = pytest.mark.stack

ORIGIN = "http://127.0.0.1:8000"  # in the stack's COLLECT_ALLOWED_ORIGINS (scripts/localstack.py DEV_SETTINGS)
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"


def document(stack: Any, token: str, event_id: str, **changes: Any) -> dict[str, Any]:
    body = {
        "pixel_code": stack.settings["TIKTOK_PIXEL_CODE"],
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"},
        "context": {
            "ttclid": f"E.C.P.{token}",
            "ttp": "stack-ttp",
            "page_url": "http://127.0.0.1:8000/products/shirt",
            "join_keys": {"shopify_cart_token": token},
        },
        "events": [{"event": "AddToCart", "event_id": event_id, "event_time": int(time.time() * 1000),
                    "properties": {"currency": "USD", "value": 25}}],
    }  # fmt: skip
    body.update(changes)
    return body


def post(stack: Any, body: Any, **headers: str) -> httpx.Response:
    sent = {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME, **headers}
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    return httpx.post(stack.url("collect") + "/", content=content, headers=sent, timeout=10)


def test_a_beacon_reaches_tiktok_with_the_pages_event_id_and_its_click_context_is_stored(stack, stack_store):
    token, event_id = f"cart-{uuid.uuid4().hex}", f"evt-{uuid.uuid4().hex}"
    response = post(stack, document(stack, token, event_id), **{"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200, response.text
    [event] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)
    assert event["event"] == "AddToCart" and event["event_source_id"] == stack.settings["TIKTOK_PIXEL_CODE"]
    assert event["user"]["ttclid"] == f"E.C.P.{token}" and event["user"]["ip"] == "203.0.113.9"
    context = stack_store.find_click_context(stack.settings["TIKTOK_PIXEL_CODE"], [(JOIN_SHOPIFY_CART, token)])
    assert context["ttclid"] == f"E.C.P.{token}" and context["consent"]["ad_storage"] == "granted"


def test_without_consent_nothing_reaches_tiktok_or_firestore(stack, stack_store):
    token, withheld, barrier = f"cart-{uuid.uuid4().hex}", f"evt-{uuid.uuid4().hex}", f"evt-{uuid.uuid4().hex}"
    response = post(stack, document(stack, token, withheld, consent={"ad_storage": "denied"}))
    assert response.status_code == 204
    # A consented event sent after it, through the same path, is the barrier.
    assert post(stack, document(stack, f"cart-{uuid.uuid4().hex}", barrier)).status_code == 200
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=barrier)
    assert sandbox_events(stack.url("sandbox"), event_id=withheld) == []
    # The denial alone is remembered (for the order webhooks): none of the request's click or page data.
    stored = stack_store.find_click_context(stack.settings["TIKTOK_PIXEL_CODE"], [(JOIN_SHOPIFY_CART, token)])
    assert set(stored) == {"consent", "pixel_code", "join_kind", "updated_at", "expire_at"}
    assert stored["consent"]["ad_storage"] == "denied"


def test_a_chunked_body_over_the_limit_is_refused_on_the_bytes_read(stack):
    """No Content-Length to trust: the limit holds on what is read (COLLECT_MAX_BODY_BYTES, 32 KiB by default)."""

    def chunks():
        yield b'{"pixel_code": "' + stack.settings["TIKTOK_PIXEL_CODE"].encode() + b'", "events": [], "x": "'
        for _ in range(100):
            yield b"a" * 1024
        yield b'"}'

    response = post(stack, chunks())
    assert response.status_code == 413 and "32768 bytes" in response.json()["reason"]


def test_a_declared_content_length_over_the_limit_is_refused_before_reading(stack):
    response = post(stack, b"{" + b" " * 40_000 + b"}")
    assert response.status_code == 413


def test_the_health_check_and_preflight_answer_in_the_stack(stack):
    assert httpx.get(stack.url("collect") + "/healthz", timeout=5).json() == {"status": "ok"}
    asking = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    preflight = httpx.options(stack.url("collect") + "/", headers=asking, timeout=5)
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == ORIGIN


def test_a_retried_request_gives_one_tiktok_event(stack):
    """sendBeacon does not retry, but fetch callers may: the event id makes the second one a duplicate."""
    token, event_id = f"cart-{uuid.uuid4().hex}", f"evt-{uuid.uuid4().hex}"
    for _ in range(3):
        assert post(stack, document(stack, token, event_id)).status_code == 200
    barrier = f"evt-{uuid.uuid4().hex}"
    assert post(stack, document(stack, token, barrier)).status_code == 200
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=barrier)
    wait_until(lambda: sandbox_events(stack.url("sandbox"), event_id=event_id), timeout=30)
    assert len(sandbox_events(stack.url("sandbox"), event_id=event_id)) == 1

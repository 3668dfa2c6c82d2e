"""Signed orders end to end in the local stack: collect -> Firestore; signed order -> Pub/Sub -> sender -> sandbox.

The page hands collect.js the checkout id (``joinKeys: {signed_orders_checkout: ...}``), collect
stores the shopper's click context and consent under it; the backend then posts the order signed
with the stack's site and secret (``make run``'s dev settings: shop.local.test,
local-signed-orders-secret). The stack is shared, so each test uses its own ids.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from shared.sources.signed_orders.signature import sign
from tests.helpers import sandbox_events, wait_for_sandbox_events
from tests.stack.test_collect_stack import post as collect
from tests.unit.test_signed_orders_schema import RAW_PII, signed_order

pytestmark = pytest.mark.stack


def post(stack: Any, body: bytes, signature: str) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Pipeline-Site": stack.settings["SIGNED_ORDERS_SITE"],
               "Pipeline-Signature": signature}  # fmt: skip
    return httpx.post(stack.url("signed_orders") + "/", content=body, headers=headers, timeout=30)


def signed_now(stack: Any, body: bytes, at: int | None = None) -> str:
    return sign(body, stack.settings["SIGNED_ORDERS_SECRET"], int(time.time()) if at is None else at)


def browse(stack: Any, checkout: str, click: str) -> None:
    """What collect.js sends for a consenting shopper on a page configured with the checkout id."""
    body = {
        "pixel_code": stack.settings["TIKTOK_PIXEL_CODE"],
        "consent": {"granted": True},
        "context": {"ttclid": click, "page_url": "http://127.0.0.1:8000/checkout",
                    "join_keys": {"signed_orders_checkout": checkout}},
        "events": [],
    }  # fmt: skip
    answer = collect(stack, body)
    assert answer.status_code == 200, answer.text
    assert not answer.json().get("ignored"), answer.text  # the checkout id has its shape: trusted


def test_a_signed_order_reaches_tiktok_once_with_its_click_joined_and_replays_are_refused(stack):
    tag = uuid.uuid4().hex
    checkout, click = f"chk_{tag}", f"E.C.P.stack-{tag[:12]}"
    browse(stack, checkout, click)
    order = signed_order(order_id=f"S-{tag[:16]}", join_keys={"signed_orders_checkout": checkout}, consent=None)
    body = json.dumps(order).encode()
    event_id = f"signed_orders:{stack.settings['SIGNED_ORDERS_SITE']}:order:{order['order_id']}:Purchase"

    signature = signed_now(stack, body)
    first = post(stack, body, signature)
    assert first.status_code == 200, first.text
    assert first.json() == {"outcome": "published", "event_id": event_id, "reason": "Purchase published"}
    (event,) = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)
    assert event["event"] == "Purchase" and event["event_source_id"] == stack.settings["TIKTOK_PIXEL_CODE"]
    assert event["user"]["email"] == [hashlib.sha256(RAW_PII[0].lower().encode()).hexdigest()]
    assert event["user"]["ttclid"] == click  # joined from collect's context: the order carried none
    assert not [raw for raw in RAW_PII[:5] if raw in json.dumps(event)]

    replayed = post(stack, body, signature)  # the same request, byte for byte
    assert replayed.status_code == 409 and "sign each attempt anew" in replayed.json()["reason"]
    stale = post(stack, body, signed_now(stack, body, at=int(time.time()) - 3600))
    assert stale.status_code == 401 and "timestamp outside the tolerance" in stale.json()["reason"]
    time.sleep(1.01)  # a second fresh signing of the same order: a new t
    again = post(stack, body, signed_now(stack, body))
    assert again.status_code == 200 and again.json()["outcome"] == "published"

    # Nothing new at the sandbox: read once a later order has gone all the way through.
    later = signed_order(order_id=f"L-{tag[:16]}", consent={"marketing": "granted"})
    later_body = json.dumps(later).encode()
    assert post(stack, later_body, signed_now(stack, later_body)).json()["outcome"] == "published"
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id.replace(order["order_id"], later["order_id"]))
    assert len(sandbox_events(stack.url("sandbox"), event_id=event_id)) == 1

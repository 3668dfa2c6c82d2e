"""A forged browser Purchase and look-alike order ids reach nothing, through the running stack.

Posted to the running collect as a script would (an allowed Origin, a consent
grant, a valid cart token), counted at the sandbox: the ViewContent of the same
request arrives, the purchases and the look-alikes never do.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from shared.receive.orders import JOIN_SHOPIFY_CART
from tests.helpers import sandbox_events, wait_for_sandbox_events
from tests.stack.test_collect_stack import document, post

pytestmark = pytest.mark.stack

FORGED_VALUE = 9.99e14


def send(stack: Any, body: dict[str, Any]) -> httpx.Response:
    """Posted as collect.js posts: a 503 (a cold instance's first Firestore write on a busy machine) is retried."""
    for _ in range(3):
        response = post(stack, body)
        if response.status_code != 503:
            return response
        time.sleep(1)
    return response


def counters(stack: Any) -> dict[str, int]:
    return httpx.get(stack.url("collect") + "/metrics", timeout=5).json()["counters"]


def barrier(stack: Any) -> None:
    """A consented event posted after the test's request: once it arrived, what was published before has too."""
    event_id = f"barrier-{uuid.uuid4().hex}"
    assert send(stack, document(stack, f"cart-{uuid.uuid4().hex}", event_id)).status_code == 200
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)


def test_a_forged_purchase_and_look_alike_order_ids_reach_nothing_while_the_requests_view_does(stack, stack_store):
    run, token = uuid.uuid4().hex[:12], f"cart-{uuid.uuid4().hex}"
    money = {"currency": "USD", "value": FORGED_VALUE}
    refused = [
        {"event": "Purchase", "event_id": f"forged-{run}", "properties": money},
        {"event": "CompletePayment", "event_id": f"forged-legacy-{run}", "properties": money},
        {"event": "PlaceAnOrder", "event_id": f"forged-placed-{run}", "properties": money},
        {"event": "ViewContent", "event_id": f"SHOPIFY:local-shop.myshopify.com:order:{run}:Purchase"},
        {"event": "InitiateCheckout", "event_id": f"shopify\uff1alocal-shop.myshopify.com\uff1aorder\uff1a{run}"},
        {"event": "AddToCart", "event_id": f"\uff57\uff4f\uff4f\uff43ommerce:woo.local.test:order:{run}"},
        {"event": "Purchase", "event_id": f"\U0001d42c\U0001d421\U0001d428\U0001d429\U0001d422\U0001d41f\U0001d432"
                                          f":local-shop.myshopify.com:order:{run}:Purchase", "properties": money},
    ]  # fmt: skip
    view = {"event": "ViewContent", "event_id": f"view-{run}", "properties": {"currency": "USD", "value": 25}}
    before = counters(stack)

    response = send(stack, document(stack, token, "unused", events=[*refused, view]))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["published"] == [view["event_id"]] and answer["consent"] == "granted"
    assert [s["event_id"] for s in answer["skipped"]] == [e["event_id"] for e in refused]
    reasons = [s["reason"] for s in answer["skipped"]]
    assert all(r.startswith("purchase events come from the order webhooks") for r in reasons[:3])
    assert set(reasons[3:]) == {"order events are sent by the order webhook"}
    # The grant and its join key still count: the click context is stored.
    context = stack_store.find_click_context(stack.settings["TIKTOK_PIXEL_CODE"], [(JOIN_SHOPIFY_CART, token)])
    assert context["ttclid"] == f"E.C.P.{token}"

    [arrived] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=view["event_id"])
    assert arrived["event"] == "ViewContent" and arrived["properties"]["value"] == 25
    barrier(stack)
    for event in refused:
        assert sandbox_events(stack.url("sandbox"), event_id=event["event_id"]) == [], event["event_id"]
    everything = sandbox_events(stack.url("sandbox"))
    assert not [e for e in everything if run in e["event_id"] and e["event_id"] != view["event_id"]]
    assert not [e for e in everything if (e.get("properties") or {}).get("value") == FORGED_VALUE]

    after = counters(stack)
    assert after.get("collect.skipped.purchase", 0) - before.get("collect.skipped.purchase", 0) >= 3
    assert after.get("collect.skipped.order_event", 0) - before.get("collect.skipped.order_event", 0) >= 4


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e"])
def test_an_order_id_hiding_an_invisible_character_is_refused_and_reaches_nothing(stack, invisible):
    run = uuid.uuid4().hex[:12]
    hidden = f"shop{invisible}ify:local-shop.myshopify.com:order:{run}:Purchase"
    events = [{"event": "Purchase", "event_id": hidden, "properties": {"currency": "USD", "value": FORGED_VALUE}},
              {"event": "ViewContent", "event_id": f"view-{run}"}]  # fmt: skip

    response = send(stack, document(stack, f"cart-{uuid.uuid4().hex}", "unused", events=events))

    assert response.status_code == 400 and response.json()["fields"] == [
        {"field": "events[0].event_id",
         "problem": "must be printable text without invisible characters (the id given to ttq.track)"}
    ]  # fmt: skip
    barrier(stack)
    assert sandbox_events(stack.url("sandbox"), event_id=hidden) == []
    assert sandbox_events(stack.url("sandbox"), event_id=f"view-{run}") == []

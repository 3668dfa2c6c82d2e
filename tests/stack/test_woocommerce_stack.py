"""WooCommerce webhooks end to end: signed delivery -> webhook -> Pub/Sub -> sender -> TikTok sandbox.

Runs the local stack as real processes (conftest's ``stack``): site
https://woo.local.test, secret local-woocommerce-secret, opt-in consent. Consent
is given as the collect endpoint gives it (a click context with a granted
snapshot under the order key, in the stack's Firestore) or as the checkout
snippet gives it (order meta ``_tt_consent``). Every test uses fresh order ids
and keys and reads the sandbox filtered by event_id: the stack is shared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.infra.store import EVENT_CLAIMS, ORDER_EVENTS, Store
from shared.receive.orders import JOIN_WOO_ORDER_KEY
from tests.helpers import sandbox_events, wait_for_sandbox_events, woocommerce_signature
from tests.unit.test_woocommerce import documented_order, with_meta

pytestmark = pytest.mark.stack


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def utc_now_text(minutes_ago: int = 0) -> str:
    moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")  # WooCommerce's *_gmt format: no suffix


def fresh_order(status: str, **changes: Any) -> dict[str, Any]:
    """A guest order with its own id, key and email, paid now unless pending."""
    tag = uuid.uuid4().hex[:10]
    order = documented_order(
        id=random.randrange(10**6, 10**12),
        order_key=f"wc_order_{tag}",
        status=status,
        date_created_gmt=utc_now_text(minutes_ago=3),
        date_paid_gmt=None if status == "pending" else utc_now_text(),
        customer_id=0,
        customer_ip_address="198.51.100.7",
        customer_user_agent="Mozilla/5.0 (Stack Test)",
    )
    order["billing"] = {**order["billing"], "email": f"Guest.{tag}@Example.com"}
    order.update(changes)
    return order


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=30) as client:
        yield client


def site_key(stack) -> str:
    return stack.settings["WOOCOMMERCE_SITE_URL"].split("://", 1)[1].removeprefix("www.")


def purchase_id(stack, order: dict) -> str:
    return f"woocommerce:{site_key(stack)}:order:{order['id']}:Purchase"


def post(http, stack, payload: dict | bytes, topic: str = "order.updated", *, secret: str | None = None,
         signed: bool = True) -> httpx.Response:  # fmt: skip
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": stack.settings["WOOCOMMERCE_SITE_URL"] + "/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": "order",
        "X-WC-Webhook-Event": topic.rsplit(".", 1)[-1],
        "X-WC-Webhook-ID": "3",
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
    }
    if signed:
        headers["X-WC-Webhook-Signature"] = woocommerce_signature(
            body, secret or stack.settings["WOOCOMMERCE_WEBHOOK_SECRET"]
        )
    return http.post(stack.url("woocommerce_webhook") + "/", content=body, headers=headers)


def grant(stack, stack_store: Store, order: dict, **context: Any) -> None:
    stack_store.put_click_context(stack.settings["TIKTOK_PIXEL_CODE"], [(JOIN_WOO_ORDER_KEY, order["order_key"])],
                                  {"consent": {"granted": True}, **context}, dt.timedelta(hours=1))  # fmt: skip


def sent_once(stack, stack_store: Store, order: dict) -> None:
    """The sender's claim on the Purchase's event_id, the order's only one, says it was sent."""
    key = (stack.settings["TIKTOK_PIXEL_CODE"], "Purchase", purchase_id(stack, order))
    assert stack_store.get(EVENT_CLAIMS, key)["state"] == "sent"
    # The receiver claims nothing: the sender's claim dedups every delivery of the order.
    assert stack_store.get(ORDER_EVENTS, ("woocommerce", site_key(stack), str(order["id"]), "Purchase")) is None


def events_once_a_later_order_arrived(http, stack, stack_store, event_id: str) -> list[dict]:
    """The sandbox's events for ``event_id``, read after a later consented order went all the way through."""
    later = fresh_order("processing")
    grant(stack, stack_store, later)
    assert post(http, stack, later).json()["outcome"] == "published"
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(stack, later))
    return sandbox_events(stack.url("sandbox"), event_id=event_id)


def test_pending_created_then_processing_updated_sends_one_purchase(http, stack, stack_store):
    order = fresh_order("pending")
    grant(stack, stack_store, order, ttclid="E.C.P.stack-click")
    first = post(http, stack, order, "order.created")
    assert first.status_code == 200 and first.json()["outcome"] == "ignored"
    paid = {**order, "status": "processing", "date_paid_gmt": utc_now_text()}
    assert post(http, stack, paid).json()["outcome"] == "published"
    # Published too: the sender's claim on the event_id makes the two one Purchase (counted below, at TikTok).
    assert post(http, stack, {**paid, "status": "completed"}).json()["outcome"] == "published"
    (event,) = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(stack, order))
    assert event["event"] == "Purchase" and event["event_source_id"] == stack.settings["TIKTOK_PIXEL_CODE"]
    assert event["user"]["ttclid"] == "E.C.P.stack-click"
    assert event["properties"]["order_id"] == str(order["id"]) and event["properties"]["value"] == 29.35
    assert len(events_once_a_later_order_arrived(http, stack, stack_store, purchase_id(stack, order))) == 1
    sent_once(stack, stack_store, order)


def test_twenty_concurrent_duplicates_send_one_purchase(http, stack, stack_store):
    order = fresh_order("processing")
    grant(stack, stack_store, order)
    body = json.dumps(order).encode()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: post(http, stack, body), range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    # Every delivery is published; the sender sends the first copy and answers the 19 others duplicate.
    assert [a.json()["outcome"] for a in answers] == ["published"] * 20
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(stack, order))
    assert len(events_once_a_later_order_arrived(http, stack, stack_store, purchase_id(stack, order))) == 1
    sent_once(stack, stack_store, order)


def test_a_completed_order_created_directly_sends_one_purchase(http, stack, stack_store):
    order = fresh_order("completed")
    grant(stack, stack_store, order)
    assert post(http, stack, order, "order.created").json()["outcome"] == "published"
    assert post(http, stack, order, "order.updated").json()["outcome"] == "published"
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(stack, order))
    assert len(events_once_a_later_order_arrived(http, stack, stack_store, purchase_id(stack, order))) == 1
    sent_once(stack, stack_store, order)


@pytest.mark.parametrize("status", ["refunded", "cancelled"])
def test_refunded_or_cancelled_orders_send_nothing(http, stack, stack_store, status):
    order = fresh_order(status)  # a refunded order keeps its date_paid_gmt
    assert order["date_paid_gmt"]
    grant(stack, stack_store, order)
    for topic in ("order.created", "order.updated"):
        answer = post(http, stack, order, topic)
        assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
    assert stack_store.get(ORDER_EVENTS, ("woocommerce", site_key(stack), str(order["id"]), "Purchase")) is None
    assert events_once_a_later_order_arrived(http, stack, stack_store, purchase_id(stack, order)) == []


def test_a_guest_order_carries_the_billing_email_hashed(http, stack):
    order = with_meta(fresh_order("processing"), _tt_consent="granted")  # consent from the checkout snippet
    assert post(http, stack, order).json()["outcome"] == "published"
    (event,) = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=purchase_id(stack, order))
    assert event["user"]["email"] == [sha(order["billing"]["email"].lower())]
    assert event["user"]["ip"] == "198.51.100.7"
    assert "external_id" not in event["user"]


def test_the_setup_ping_gets_exactly_200(http, stack):
    answer = http.post(stack.url("woocommerce_webhook") + "/", content=b"webhook_id=99",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert answer.status_code == 200


def test_forged_and_unsigned_deliveries_get_401_and_leave_no_trace(http, stack, stack_store):
    order = with_meta(fresh_order("processing"), _tt_consent="granted")
    grant(stack, stack_store, order)
    assert post(http, stack, order, signed=False).status_code == 401
    assert post(http, stack, order, secret="forged-secret").status_code == 401
    assert stack_store.get(ORDER_EVENTS, ("woocommerce", site_key(stack), str(order["id"]), "Purchase")) is None
    assert events_once_a_later_order_arrived(http, stack, stack_store, purchase_id(stack, order)) == []


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"null", b"[]", b'{"id": "x"}', b'{"id": 1, "status": "processing", "line_items": "oops"}',
     json.dumps({"id": 2, "status": "completed", "billing": [], "total": None, "date_paid_gmt": "yesterday"}).encode(),
     "ünïcode but not json".encode()],
)  # fmt: skip
def test_malformed_bodies_from_a_valid_signer_never_get_a_5xx(http, stack, body):
    answer = post(http, stack, body)
    # An empty body can not carry a valid signature (nothing was signed): that one is a 401.
    assert answer.status_code == (401 if body == b"" else 200)
    assert answer.json()["reason"]


def _peak_rss_mib(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def test_eight_concurrent_chunked_30_mb_bodies_are_refused_without_being_read(http, stack, stack_store):
    url = stack.url("woocommerce_webhook") + "/"
    (worker,) = stack.stack.worker_pids("woocommerce_webhook")
    peak_before = _peak_rss_mib(worker)

    def send(_: int) -> tuple[int | str, int]:
        sent = 0

        def chunks():  # no Content-Length: httpx sends it chunked, as an attacker would
            nonlocal sent
            for _ in range(30 * 16):
                sent += 65536
                yield b"{" * 65536

        try:
            answer = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"}, timeout=60)
        except httpx.HTTPError as exc:
            return type(exc).__name__, sent
        return answer.status_code, sent

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    # Answered once 8 MiB were read, before the signature check: the clients had not sent it all.
    assert [status for status, _ in answers] == [413] * 8
    assert all(sent < 30 * 2**20 for _, sent in answers), answers
    # Each request holds at most 8 MiB (twice, while joined); reading all 30 MiB of each took about 180 MiB.
    assert _peak_rss_mib(worker) - peak_before < 128
    assert stack.stack.worker_pids("woocommerce_webhook") == [worker]  # no out-of-memory kill, no restart
    order = with_meta(fresh_order("processing"), _tt_consent="granted")
    assert post(http, stack, order).json()["outcome"] == "published"

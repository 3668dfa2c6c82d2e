"""Personal data hidden by Unicode or encoding, or put where an identifier belongs, reaches nothing.

Through the running stack: a consented collect request, a signed Shopify order
joined to it and a signed WooCommerce order carry every hidden shape
(an email with an IDN or CJK domain, a fullwidth ``＠`` or small ``﹫``,
fullwidth and percent-encoded phone numbers) in every field it names: page
URLs and kept query values, ``query``, ``description``, ``content_name``,
custom properties, ttclid, ``_ttp`` and locale through collect, WooCommerce's
``_ttclid`` meta and attribution landing URL, Shopify's note attributes and
landing page, and a phone number typed as the city. Each event reaches the
sandbox; none of the raw strings is in the requests the sandbox received or in
the functions' log files.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import localstack
import pytest

from tests.emulator.test_shopify_webhook import new_order
from tests.helpers import wait_for_sandbox_events
from tests.stack.test_collect_stack import post as collect_post
from tests.stack.test_shopify_stack import deliver
from tests.stack.test_shopify_stack import purchase_id as shopify_purchase_id
from tests.stack.test_woocommerce_stack import fresh_order, grant
from tests.stack.test_woocommerce_stack import post as woo_post
from tests.stack.test_woocommerce_stack import purchase_id as woo_purchase_id
from tests.unit.test_woocommerce import with_meta

pytestmark = pytest.mark.stack

TAG = uuid.uuid4().hex[:8]
IDN = f"hidden{TAG}@exämple.de"
CJK = f"cjk{TAG}@例え.jp"
FULLWIDTH_AT = f"fw{TAG}＠example.com"
SMALL_AT = f"small{TAG}﹫example.com"
FULLWIDTH_PHONE = "＋１ ２１３ ３７３ ４２５３"
ENCODED_PHONE = "%2B1%20213%20555%200142"
# What must appear nowhere: each address's local part and odd characters, each phone's digits in any form.
FORBIDDEN = (f"hidden{TAG}", f"cjk{TAG}", f"fw{TAG}", f"small{TAG}", "exämple", "例え", "＠", "﹫",
             "２１３", "４２５３", "2133734253", "213 373 4253", "213%20555", "2135550142", "213 555 0142")  # fmt: skip
LOGS = tuple(f"{name}.log" for name in localstack.FUNCTIONS)


def _collect_document(stack, cart: str, event_id: str) -> dict:
    return {
        "pixel_code": stack.settings["TIKTOK_PIXEL_CODE"],
        "consent": {"granted": True},
        "context": {
            "ttclid": CJK, "ttp": FULLWIDTH_PHONE, "locale": SMALL_AT,
            "page_url": f"http://127.0.0.1:8000/a/{IDN}/{FULLWIDTH_PHONE}?utm_term={FULLWIDTH_AT}"
                        f"&utm_content={ENCODED_PHONE}&ttclid=E.C.P.{TAG}",
            "referrer": f"https://ref.example/{SMALL_AT}",
            "join_keys": {"shopify_cart_token": cart},
        },
        "events": [{
            "event": "AddToCart", "event_id": event_id, "event_time": int(time.time() * 1000),
            "page": {"url": f"http://127.0.0.1:8000/p/{CJK}?utm_source={SMALL_AT}"},
            "properties": {
                "currency": "USD", "value": 25, "query": f"find {IDN}", "description": f"for {FULLWIDTH_AT}",
                "gift_note": f"to {SMALL_AT}, call {ENCODED_PHONE}", "tags": [CJK, "ok"],
                "contents": [{"content_id": "SKU1", "quantity": 1,
                              "content_name": f"engraved {CJK} {FULLWIDTH_PHONE}"}],
            },
        }],
    }  # fmt: skip


def _retried(send, attempts: int = 6) -> httpx.Response:
    """A 503 ("try again": a cold emulator on a loaded machine) retried, as a browser or a platform does."""
    for _ in range(attempts - 1):
        response = send()
        if response.status_code != 503:
            return response
        time.sleep(2)
    return send()


def _readable(text: str) -> str:
    """JSON text with its \\u escapes undone (a log line written ASCII-only hides nothing this way)."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return text


def _log_lines(run_dir: Path, offsets: dict[str, int]) -> list[str]:
    lines = []
    for name, offset in offsets.items():
        path = run_dir / name
        if path.exists():
            with path.open("rb") as log:
                log.seek(offset)
                lines += log.read().decode("utf-8", errors="replace").splitlines()
    return lines


def test_hidden_personal_data_reaches_neither_the_sandbox_nor_the_logs(stack, stack_store):
    run_dir = localstack.RUN_DIR
    offsets = {name: (run_dir / name).stat().st_size if (run_dir / name).exists() else 0 for name in LOGS}
    sandbox = stack.url("sandbox")

    # collect: consent and the click context under the Shopify cart, every shape in every field.
    shopify_order = new_order()
    collect_event = f"evt-{TAG}-{uuid.uuid4().hex[:6]}"
    document = _collect_document(stack, shopify_order["cart_token"], collect_event)
    answer = _retried(lambda: collect_post(stack, document))
    assert answer.status_code == 200, answer.text
    assert {i["field"] for i in answer.json()["ignored"]} >= {"context.ttclid", "context.ttp", "context.locale"}

    # Shopify: joined to that grant; shapes in note attributes, landing page, city and a typed title.
    shopify_order.update(
        note_attributes=[{"name": "_ttclid", "value": IDN}, {"name": "_ttp", "value": FULLWIDTH_AT}],
        landing_site=f"/products/x?ttclid={SMALL_AT}&utm_term={CJK}&email={IDN}",
    )
    shopify_order["billing_address"] = {**shopify_order["billing_address"], "city": FULLWIDTH_PHONE}
    shopify_order["shipping_address"] = {**shopify_order["shipping_address"], "city": ENCODED_PHONE}
    shopify_order["line_items"][0]["title"] = f"Engraving {FULLWIDTH_AT}"
    reply = _retried(lambda: deliver(httpx.Client(timeout=10), stack, shopify_order))
    assert reply.status_code == 200 and reply.json()["outcome"] == "published", reply.text

    # WooCommerce: an email as the _ttclid meta, a phone as the landing URL's ttclid, a phone as the city.
    landing = f"https://woo.local.test/?ttclid={ENCODED_PHONE}"
    woo_order = with_meta(fresh_order("processing"), _ttclid=CJK, _ttp=SMALL_AT,
                          _wc_order_attribution_session_entry=landing)  # fmt: skip
    woo_order["billing"] = {**woo_order["billing"], "city": FULLWIDTH_PHONE, "postcode": IDN, "state": FULLWIDTH_AT}
    grant(stack, stack_store, woo_order)
    reply = _retried(lambda: woo_post(httpx.Client(timeout=10), stack, woo_order))
    assert reply.status_code == 200 and reply.json()["outcome"] == "published", reply.text

    [browser] = wait_for_sandbox_events(sandbox, 1, event_id=collect_event)
    [shopify] = wait_for_sandbox_events(sandbox, 1, event_id=shopify_purchase_id(shopify_order))
    [woo] = wait_for_sandbox_events(sandbox, 1, event_id=woo_purchase_id(stack, woo_order))
    assert browser["page"]["url"] == "http://127.0.0.1:8000/p/[redacted]?utm_source=%5Bredacted%5D"
    for event in (browser, shopify, woo):
        assert "ttp" not in event["user"], event["user"]
    assert "locale" not in browser["user"] and shopify["user"]["locale"] == shopify_order["customer_locale"]
    assert "ttclid" not in browser["user"] and "ttclid" not in woo["user"]
    assert "ttclid" not in shopify["user"] and "city" not in shopify["user"] and "city" not in woo["user"]
    assert shopify["properties"]["contents"][0]["content_name"] == "Engraving [redacted]"

    # Everything the sandbox kept of what it received: each event whole, and each request's summary.
    events = httpx.get(f"{sandbox}/sandbox/events", timeout=5).json()["events"]
    requests = httpx.get(f"{sandbox}/sandbox/requests", timeout=5).json()["requests"]
    assert {e["event_id"] for e in (browser, shopify, woo)} <= {e["event_id"] for e in events}
    everything = _readable(json.dumps({"events": events, "requests": requests}))
    for part in FORBIDDEN:
        assert part not in everything, ("sandbox", part)

    time.sleep(1)  # the last log lines of the sender
    lines = _log_lines(run_dir, offsets)
    assert any(collect_event in line for line in lines), "collect's log line of this request"
    for line in lines:
        readable = _readable(line)
        for part in FORBIDDEN:
            assert part not in readable, ("logs", part, readable[:300])

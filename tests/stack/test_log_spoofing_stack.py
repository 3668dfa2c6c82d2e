"""Text an attacker chooses cannot make one log entry display as two, or reordered.

Through the running stack: a signed Shopify delivery whose webhook id and an
unknown topic, and a signed WooCommerce delivery whose delivery id carry the
characters a log viewer acts on (NEL and other C1 controls, which an HTTP header
can hold) are logged by the functions; every new line of their log files is
one JSON document with those characters escaped, never raw.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import localstack
import pytest

from shared.config import DEFAULT_SHOPIFY_API_VERSION
from tests.emulator.test_shopify_webhook import new_order
from tests.helpers import shopify_signature, woocommerce_signature
from tests.stack.test_woocommerce_stack import fresh_order

pytestmark = pytest.mark.stack

# What an HTTP header can carry (Latin-1) of what a viewer acts on: NEL (a line break in some viewers),
# CSI (starts a terminal escape sequence) and another C1 control.
C1 = {"next line": "\x85", "control sequence introducer": "\x9b", "string terminator": "\x9c"}
RAW_UNSAFE = ("\x85", "\x9b", "\x9c", "\u2028", "\u2029", "\u202e")
LOGS = tuple(f"{name}.log" for name in localstack.FUNCTIONS)


def _new_lines(offsets: dict[str, int]) -> list[str]:
    lines = []
    for name, offset in offsets.items():
        path = localstack.RUN_DIR / name
        if path.exists():
            with path.open("rb") as log:
                log.seek(offset)
                lines += log.read().decode("utf-8").split("\n")
    return [line for line in lines if line]


def test_hostile_header_text_is_logged_escaped_one_json_line_each(stack):
    offsets = {n: (localstack.RUN_DIR / n).stat().st_size if (localstack.RUN_DIR / n).exists() else 0 for n in LOGS}
    tag = uuid.uuid4().hex[:8]
    hostile = f"spoof{tag}" + "".join(C1.values()) + '{"severity": "ERROR", "message": "forged"}'
    latin1 = hostile.encode("latin-1")

    body = json.dumps(new_order()).encode()
    shopify_headers = {
        "Content-Type": "application/json",
        "X-Shopify-Shop-Domain": stack.settings["SHOPIFY_SHOP_DOMAIN"],
        "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION,
        "X-Shopify-Hmac-Sha256": shopify_signature(body, stack.settings["SHOPIFY_WEBHOOK_SECRET"]),
    }
    with httpx.Client(timeout=15) as http:
        for topic, webhook_id in (("orders/paid", latin1), (latin1, str(uuid.uuid4()).encode())):
            headers = [(k.encode(), v.encode()) for k, v in shopify_headers.items()]
            headers += [(b"X-Shopify-Topic", topic if isinstance(topic, bytes) else topic.encode()),
                        (b"X-Shopify-Webhook-Id", webhook_id)]  # fmt: skip
            answer = http.post(stack.url("shopify_webhook") + "/", content=body, headers=headers)
            assert answer.status_code < 500, answer.text
        woo_body = json.dumps(fresh_order("processing")).encode()
        woo_headers = [
            (b"Content-Type", b"application/json"),
            (b"X-WC-Webhook-Source", (stack.settings["WOOCOMMERCE_SITE_URL"] + "/").encode()),
            (b"X-WC-Webhook-Topic", b"order.updated"), (b"X-WC-Webhook-Resource", b"order"),
            (b"X-WC-Webhook-Event", b"updated"), (b"X-WC-Webhook-ID", b"3"),
            (b"X-WC-Webhook-Delivery-ID", latin1),
            (b"X-WC-Webhook-Signature",
             woocommerce_signature(woo_body, stack.settings["WOOCOMMERCE_WEBHOOK_SECRET"]).encode()),
        ]  # fmt: skip
        answer = http.post(stack.url("woocommerce_webhook") + "/", content=woo_body, headers=woo_headers)
        assert answer.status_code < 500, answer.text

    time.sleep(1)
    lines = _new_lines(offsets)
    mentioning = [line for line in lines if f"spoof{tag}" in line]
    assert mentioning, "the hostile text reached no log line: this test would prove nothing"
    for line in lines:
        assert not any(character in line for character in RAW_UNSAFE), line[:300]
        record = json.loads(line)  # one entry, one JSON document
        assert isinstance(record, dict) and "severity" in record
    # Escaped, so a reader of the line sees where the forged text starts and ends; decoded, it is the same text.
    assert any("\\u0085" in line for line in mentioning), mentioning[:3]
    assert not any(json.loads(line).get("message") == "forged" for line in lines)

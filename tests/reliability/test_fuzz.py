"""Fuzz every HTTP entry point of the running stack: no input anyone can send gets a 5xx.

Inputs are random JSON (with the known killers mixed in: 4,400-digit
integers, ``1e999``, arrays nested 1,000 deep, lone surrogates, Unicode digits
such as ``"²"``), random bytes, random headers, and documents that are valid
but for a few fields replaced at random, so the fuzz reaches past parsing.
Webhook bodies are fuzzed both unsigned and signed with the stack's secret
(a signed body is what a leaked secret or a buggy platform plugin can send).
A 503 that says "retry later" is the right answer only while a dependency is
down on purpose, which never happens here, so every 5xx fails.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import string
import time
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability import harness

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

# Modest, so the folder stays within its time box; bench/adversarial.py runs more (RELIABILITY_FUZZ_EXAMPLES).
EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "a\ud83d", "\ude00b"])
TEXT = st.one_of(st.text(max_size=40), SURROGATES, st.sampled_from(["²", "١٢٣", "𝟗", "٣", "", " ", "0" * 400]))
# JSON tokens json.dumps cannot produce but a client can send.
RAW_TOKENS = ["1e999", "-1e999", "NaN", "Infinity", "1" * 4400, "-" + "9" * 5000, "[" * 1000 + "]" * 1000,
              '{"a":' * 1000 + "1" + "}" * 1000, "1.5e308", "0.0000000001e-400", "true", "null"]  # fmt: skip
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**310),
    st.floats(allow_nan=False, allow_infinity=False), TEXT,
)  # fmt: skip
JSON = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5), max_leaves=20
)
RAW_MARK = "\x00raw\x00"  # a leaf that becomes one of RAW_TOKENS verbatim in the serialized document


@st.composite
def json_bytes(draw: st.DrawFn, value: Any = None) -> bytes:
    """``value`` (or random JSON) serialized, sometimes with a raw token spliced in, sometimes as raw UTF-8."""
    value = draw(JSON) if value is None else value
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    if RAW_MARK in text or draw(st.integers(0, 4)) == 0:
        token = draw(st.sampled_from(RAW_TOKENS))
        text = text.replace(json.dumps(RAW_MARK), token) if RAW_MARK in text else token
    return text.encode("utf-8", "surrogatepass")  # an unescaped lone surrogate is invalid UTF-8 on the wire


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:5]):
            found += _paths(item, (*prefix, index))
    return found


def _replace(document: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return document


@st.composite
def mutated(draw: st.DrawFn, make: Any) -> Any:
    """A fresh valid document with one to three fields (at any depth) replaced by random or killer values."""
    # Hypothesis forbids the random module inside strategies; the ids must differ between examples all the same.
    document = make(draw(st.randoms(use_true_random=True)))
    paths = _paths(document)[1:]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        try:
            document = _replace(copy.deepcopy(document), path, draw(st.one_of(JSON, st.just(RAW_MARK))))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    return document


def _body(draw: st.DrawFn, make: Any) -> bytes:
    kind = draw(st.sampled_from(["mutated", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return draw(json_bytes())
    return draw(json_bytes(draw(mutated(make))))


# What an HTTP client can put in a header value (no CR/LF, no surrounding whitespace).
HEADER_TEXT = st.text(alphabet=string.printable.strip() + " ", max_size=60).map(str.strip)


@pytest.fixture(scope="module")
def client() -> Any:
    with httpx.Client(timeout=30) as http:
        yield http


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post(url, content=body, headers=headers)


def _no_5xx(response: httpx.Response, body: bytes, headers: dict[str, str]) -> None:
    assert response.status_code < 500, (
        f"{response.status_code} {response.text[:300]!r} for body {body[:200]!r} ({len(body)} bytes), headers {headers}"
    )


@given(data=st.data())
@FUZZ
def test_collect_answers_any_request_without_a_5xx(rstack, client, data):
    pixel = rstack.settings["TIKTOK_PIXEL_CODE"]

    def document(_rng: Any) -> Any:
        return harness.collect_document(pixel, f"rel-fuzz-{uuid.uuid4().hex}")

    body = _body(data.draw, document)
    headers = {
        "Origin": data.draw(st.one_of(st.just(harness.COLLECT_ORIGIN), st.just("null"), HEADER_TEXT)),
        "Content-Type": data.draw(st.one_of(st.sampled_from(["text/plain;charset=UTF-8", "application/json",
                                                             "application/json; charset=latin-1", ""]), HEADER_TEXT)),
        "User-Agent": data.draw(st.one_of(st.just(harness.CHROME), HEADER_TEXT)),
        "X-Forwarded-For": data.draw(st.one_of(st.just(harness.shopper_ip(data.draw(st.integers(0, 60000)))),
                                               HEADER_TEXT)),
    }  # fmt: skip
    if data.draw(st.booleans()):
        del headers["Origin"]
        headers["X-Collect-Key"] = data.draw(st.one_of(st.just("local-collect-key"), HEADER_TEXT))
    _no_5xx(_post(client, rstack.url("collect") + "/", body, headers), body, headers)


SHOPIFY_TOPICS = st.one_of(st.sampled_from([
    "orders/create", "orders/paid", "orders/cancelled", "refunds/create", "checkouts/create", "customers/create",
    "customers/data_request", "customers/redact", "shop/redact", "orders/updated"]), HEADER_TEXT)  # fmt: skip


def _shopify_headers(rstack, data: Any, body: bytes, signed: bool) -> dict[str, str]:
    topic = data.draw(SHOPIFY_TOPICS)
    headers = harness.shopify_headers(body, rstack.settings, topic, str(uuid.uuid4()), signed=signed)
    if not signed:
        headers["X-Shopify-Hmac-Sha256"] = data.draw(HEADER_TEXT)
        headers["X-Shopify-Shop-Domain"] = data.draw(st.one_of(st.just(headers["X-Shopify-Shop-Domain"]), HEADER_TEXT))
    headers["X-Shopify-Webhook-Id"] = data.draw(st.one_of(st.just(headers["X-Shopify-Webhook-Id"]), HEADER_TEXT))
    headers["X-Shopify-Triggered-At"] = data.draw(st.one_of(st.just(headers["X-Shopify-Triggered-At"]), HEADER_TEXT))
    if signed:  # the signature covers only the body; the headers above stay as fuzzed
        headers["X-Shopify-Hmac-Sha256"] = harness.shopify_signature(body, rstack.settings["SHOPIFY_WEBHOOK_SECRET"])
    return headers


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@given(data=st.data())
@FUZZ
def test_the_shopify_webhook_answers_any_delivery_without_a_5xx(rstack, client, data, signed):
    body = _body(data.draw, harness.shopify_order)
    headers = _shopify_headers(rstack, data, body, signed)
    _no_5xx(_post(client, rstack.url("shopify_webhook") + "/", body, headers), body, headers)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@given(data=st.data())
@FUZZ
def test_the_woocommerce_webhook_answers_any_delivery_without_a_5xx(rstack, client, data, signed):
    body = _body(data.draw, harness.woocommerce_order)
    topic = data.draw(st.one_of(st.sampled_from(["order.created", "order.updated", "order.deleted"]), HEADER_TEXT))
    headers = harness.woocommerce_headers(body, rstack.settings, topic, signed=signed)
    if not signed:
        headers["X-WC-Webhook-Signature"] = data.draw(HEADER_TEXT)
        headers["X-WC-Webhook-Source"] = data.draw(st.one_of(st.just(headers["X-WC-Webhook-Source"]), HEADER_TEXT))
    response = _post(client, rstack.url("woocommerce_webhook") + "/", body, headers)
    _no_5xx(response, body, headers)
    if signed and response.status_code < 300:
        # WooCommerce never retries: a 2xx must be a decision (or a park), never a silent "error".
        assert response.json().get("outcome") != "error", (response.text[:300], body[:200])


def _envelope(rstack) -> dict[str, Any]:
    return {
        "source": "shopify", "pixel_code": rstack.settings["TIKTOK_PIXEL_CODE"], "event": "Purchase",
        "event_id": f"rel-fuzz:{uuid.uuid4().hex}", "event_time": int(time.time()) - 30,
        "user": {"email": ["a" * 64], "ip": "203.0.113.24", "ttclid": "E.C.P.fuzz"},
        "properties": {"currency": "EUR", "value": 42.5, "order_id": "77"}, "consent": "granted",
    }  # fmt: skip


@given(data=st.data())
@FUZZ
def test_the_senders_push_endpoint_answers_any_body_without_a_5xx(rstack, client, data):
    kind = data.draw(st.sampled_from(["envelope", "message", "body"]))
    if kind == "body":  # anything at all where the push JSON should be
        body = _body(data.draw, lambda _rng: {"message": {"data": "", "messageId": "1"}, "subscription": "s"})
    else:
        payload = data.draw(json_bytes(data.draw(mutated(lambda _rng: _envelope(rstack))))) if kind == "envelope" \
            else _body(data.draw, lambda _rng: _envelope(rstack))  # fmt: skip
        message = {"data": base64.b64encode(payload).decode(), "messageId": uuid.uuid4().hex,
                   "attributes": data.draw(st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3)),
                   "publishTime": "2026-11-24T00:00:00Z"}  # fmt: skip
        body = json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()
    headers = {"Content-Type": "application/json"}
    _no_5xx(_post(client, rstack.url("sender") + "/", body, headers), body, headers)

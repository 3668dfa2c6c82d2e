"""Input anyone can send never makes collect answer 5xx, at the domain level.

The handler (:func:`shared.receive.collect.handler.handle`) runs against the real Firestore and
Pub/Sub emulators; hypothesis sends it random bytes, random JSON and valid
bodies with one field replaced by random JSON, under random headers. Every
answer must be one of the documented 2xx/4xx, never a 5xx and never an
exception. The known 500s are pinned as plain examples first.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.config import PixelConfig, Tenants
from shared.infra.http import Reply
from shared.receive.collect import handler as domain
from shared.receive.collect.request import HttpRequest

PIXEL = "CTESTPIXEL01"
ORIGIN = "https://shop.example"
KEY = "fuzz-collect-key"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
DOCUMENTED = {200, 204, 400, 403, 405, 413, 415, 429}


@pytest.fixture
def runtime(store, event_publisher) -> domain.Runtime:
    pixel = PixelConfig(pixel_code=PIXEL, allowed_origins=[ORIGIN], collect_keys=[KEY], signing_secrets=["s"])
    return domain.Runtime(Tenants(pixels={PIXEL: pixel}), max_body_bytes=16_384, max_events=5,
                          store_factory=lambda: store, publisher_factory=lambda: event_publisher)  # fmt: skip


def valid_body() -> dict[str, Any]:
    return {
        "pixel_code": PIXEL,
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"},
        "context": {
            "ttclid": "E.C.P.fuzz",
            "page_url": "https://shop.example/p?ttclid=E.C.P.fuzz",
            "join_keys": {"shopify_cart_token": uuid.uuid4().hex},
            "user": {"email": "a@b.example"},
        },
        "events": [{"event": "AddToCart", "event_id": f"evt-{uuid.uuid4().hex}", "event_time": int(time.time()),
                    "properties": {"currency": "USD", "value": 1.5, "contents": [{"content_id": "1", "quantity": 1}],
                                   "note": "x"}}],
    }  # fmt: skip


def answer(runtime: domain.Runtime, raw: bytes, headers: dict[str, str] | None = None) -> Reply:
    sent = {"origin": ORIGIN, "content-type": "text/plain;charset=UTF-8", "user-agent": CHROME}
    sent.update(headers or {})
    reply = domain.handle(HttpRequest("POST", sent, io.BytesIO(raw).read, "203.0.113.5"), runtime)
    assert reply.status in DOCUMENTED, (reply.status, reply.body)
    if reply.status >= 400:
        assert isinstance(reply.body["reason"], str) and reply.body["reason"]
    return reply


# --- inputs that once answered 500, pinned -------------------------------------------------------------------


def with_text(path: list[Any], text: str) -> bytes:
    """A valid body with the value at ``path`` replaced by raw JSON ``text`` (numbers json.dumps cannot write)."""
    document = valid_body()
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "__RAW__"
    return json.dumps(document).replace('"__RAW__"', text).encode()


@pytest.mark.parametrize(
    ("path", "text", "reason"),
    [
        (["events", 0, "event_time"], "1e999", "finite"),
        (["events", 0, "event_time"], "1" * 4301, "digits"),
        (["events", 0, "properties", "value"], "1" * 4301, "digits"),
        (["events", 0, "properties", "note"], "-" + "9" * 5000, "digits"),
        (["events", 0, "properties", "value"], "1e300", "properties"),
        (["events", 0, "properties", "contents"], '[{"price": 1e308}]', "contents.price"),
        (["events", 0, "properties", "note"], "[" * 1000 + "]" * 1000, "nested deeper"),
        (["events", 0, "properties", "note"], '"\\udfff"', "surrogate"),
        (["context", "join_keys", "customer_id"], "1" * 400, "digits"),
        (["events", 0, "event_time"], "NaN", "not a JSON number"),
    ],
)
def test_inputs_that_raised_are_a_400_naming_the_problem(runtime, topic, path, text, reason):
    reply = answer(runtime, with_text(path, text))
    assert reply.status == 400 and reason in reply.body["reason"], reply.body
    assert topic.pull(timeout=0.5) == []


def test_an_event_time_far_in_the_future_takes_the_time_of_receipt(runtime, topic):
    from tests.conftest import decode_message

    reply = answer(runtime, with_text(["events", 0, "event_time"], "1e300"))
    assert reply.status == 200
    [envelope] = [decode_message(m) for m in topic.pull_all(1)]
    assert abs(envelope["event_time"] - time.time()) < 60


@pytest.mark.parametrize("length", ["²", "1e3", "-5", "99999999999999999999999"])
def test_a_content_length_that_is_not_ascii_digits_is_refused(runtime, length):
    reply = answer(runtime, json.dumps(valid_body()).encode(), {"content-length": length})
    assert reply.status == 413


# --- hypothesis: random input, random headers ------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8") | st.characters(categories=["Cs"]), max_size=30)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT | st.sampled_from([10**60, -(10**400), 1e308]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=15,
)
_LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "origin": st.sampled_from([ORIGIN, "null", "", "https://evil.example", "https://shop.example:99999"]) | _LATIN1,
        "content-type": st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]) | _LATIN1,
        "user-agent": st.sampled_from([CHROME, "", "curl/8.5", "Googlebot/2.1"]) | _LATIN1,
        "content-length": st.sampled_from(["0", "10", "99999999", "abc"]) | _LATIN1,
        "x-forwarded-for": st.sampled_from(["1.2.3.4", "::1, 2001:db8::1", "", "nonsense"]) | _LATIN1,
        "sec-purpose": st.sampled_from(["prefetch"]) | _LATIN1,
    },
)
_PATHS = [
    ["pixel_code"], ["key"], ["consent"], ["context"], ["context", "ttclid"], ["context", "page_url"],
    ["context", "join_keys"], ["context", "join_keys", "customer_id"], ["context", "user"],
    ["context", "user", "email"], ["events"], ["events", 0], ["events", 0, "event"], ["events", 0, "event_id"],
    ["events", 0, "event_time"], ["events", 0, "properties"], ["events", 0, "properties", "value"],
    ["events", 0, "properties", "contents"], ["events", 0, "properties", "note"], ["events", 0, "page"],
]  # fmt: skip
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(raw=st.binary(max_size=3000), headers=_HEADERS)
@example(raw=b"\xff\xfe{", headers={})
@example(raw=b'{"pixel_code": "CTESTPIXEL01", "events": [{"event_time": 1' + b"0" * 5000 + b"}]}", headers={})
def test_random_bytes_never_get_a_5xx(runtime, raw, headers):
    answer(runtime, raw, headers)


@FUZZ
@given(document=_JSON, headers=_HEADERS)
def test_random_json_never_gets_a_5xx(runtime, document, headers):
    answer(runtime, json.dumps(document).encode(), headers)


@FUZZ
@given(path=st.sampled_from(_PATHS), value=_JSON, headers=_HEADERS)
def test_a_valid_body_with_any_field_replaced_never_gets_a_5xx(runtime, path, value, headers):
    document = valid_body()
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    answer(runtime, json.dumps(document).encode(), headers)

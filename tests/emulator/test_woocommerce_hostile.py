"""Hostile input to the WooCommerce webhook: signed or not, it never gets a 5xx and no signed order vanishes.

Signed bodies come from whoever holds the site's secret (the store, or a plugin
gone wrong); WooCommerce never retries and disables a webhook after repeated
failures, so every signed order must end published, skipped with a reason,
parked for replay or refused with a 4xx and a reason, never a bare 200 "error".
Runs against the real Firestore and Pub/Sub emulators, through the real
function (test client) or :func:`shared.receive.woocommerce.handler.handle`.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from shared.domain import identity
from shared.infra.http import Reply
from shared.outcome import Kind
from shared.receive.woocommerce import flow, handler, parking
from shared.receive.woocommerce.handler import MAX_BODY_BYTES, handle
from shared.receive.woocommerce.runtime import Runtime
from tests.conftest import decode_message
from tests.emulator.test_woocommerce_webhook import (
    SECRET,
    Webhook,
    deliver_to,
    headers_for,
    make_app,
    make_runtime,
    new_order,
    parked_from,
    woo_env,
)
from tests.helpers import woocommerce_signature
from tests.unit.test_woocommerce import _order as order_shaped
from tests.unit.test_woocommerce import with_meta

# Every outcome a signed delivery may end in, and the status that goes with it. Not "duplicate":
# the receiver claims nothing, so every delivery of an order event is published (the sender dedups).
SIGNED_OUTCOMES = {
    "published": {200},
    "withheld_consent": {200},
    "ignored": {200},
    Kind.SKIPPED: {200},  # e.g. paid outside ORDER_MAX_EVENT_AGE_DAYS: answered 200 so WooCommerce does not retry
    Kind.PARKED: {202},
    Kind.REFUSED: {422},
}


@pytest.fixture
def webhook(monkeypatch, emulators, topic, store, collection_prefix) -> Webhook:
    return Webhook(make_app(monkeypatch, woo_env(emulators, topic, collection_prefix)), store, topic)


@pytest.fixture
def healthy(emulators, topic, store, event_publisher, collection_prefix) -> Runtime:
    return make_runtime(emulators, topic, collection_prefix, store=store, publisher=event_publisher)


def granted(order: dict) -> dict:
    return with_meta(order, _tt_consent="granted")


def signed_reply(webhook: Webhook, body: bytes) -> tuple[int, dict]:
    response = webhook.post(body)
    return response.status_code, response.get_json()


# --- values that used to crash before the park-for-replay net --------------------


@pytest.mark.parametrize("field", ["customer_id", "quantity", "product_id"])
def test_unicode_digits_in_ids_and_quantities_are_not_numbers(webhook, field):
    # "²".isdigit() is True and int("²") raises: this used to be a 500 before the park-for-replay net.
    order = granted(new_order())
    if field == "customer_id":
        order["customer_id"] = "²"
    else:
        order["line_items"][0][field] = "²"
    status, reply = signed_reply(webhook, json.dumps(order).encode())
    assert (status, reply["outcome"]) == (200, "published")
    message = webhook.exactly_one_published()
    first = message["properties"]["contents"][0]
    dropped = {"customer_id": not message["user"].get("external_id"), "quantity": "quantity" not in first,
               "product_id": "content_id" not in first}  # fmt: skip
    assert dropped[field]


def test_an_order_id_in_unicode_digits_is_skipped_with_a_reason(webhook):
    status, reply = signed_reply(webhook, json.dumps(granted(new_order(id="١٢٣"))).encode())
    assert (status, reply["outcome"]) == (200, "ignored") and "field id" in reply["reason"]
    assert webhook.nothing_published() and webhook.no_claims()


@pytest.mark.parametrize(
    "total",
    ['"' + "9" * 310 + '"', "9" * 310, '"1e400"', '"١٢"', '"1_000"', '"Infinity"', "1e300", '"29.35.1"'],
    ids=["310-digit-string", "310-digit-integer", "exponent", "arabic-digits", "underscore", "inf", "1e300", "dots"],
)
def test_an_absurd_total_is_dropped_from_value_and_the_order_still_sent(webhook, total):
    order = granted(new_order())
    body = json.dumps({**order, "total": "TOTAL"}).encode().replace(b'"TOTAL"', total.encode())
    status, reply = signed_reply(webhook, body)
    assert (status, reply["outcome"]) == (200, "published")
    message = webhook.exactly_one_published()
    assert "value" not in message["properties"] and message["properties"]["currency"] == "USD"


def test_a_total_that_is_a_sane_decimal_is_kept(webhook):
    signed_reply(webhook, json.dumps(granted(new_order(total="1234.5"))).encode())
    assert webhook.exactly_one_published()["properties"]["value"] == 1234.5


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_arrays_nested_deeper_than_any_order_are_skipped_with_a_reason(webhook, depth):
    order = granted(new_order())
    body = json.dumps({**order, "meta_data": "DEEP"}).encode().replace(b'"DEEP"', b"[" * depth + b"]" * depth)
    status, reply = signed_reply(webhook, body)
    assert (status, reply["outcome"]) == (200, "ignored") and "nested deeper" in reply["reason"]
    assert webhook.nothing_published()


def test_an_integer_past_the_interpreters_limit_is_skipped_with_a_reason(webhook):
    body = json.dumps({**granted(new_order()), "total": "T"}).encode().replace(b'"T"', b"7" * 5000)
    status, reply = signed_reply(webhook, body)
    assert (status, reply["outcome"]) == (200, "ignored") and "digits" in reply["reason"]


def _set_surrogate(order: dict, where: str) -> dict:
    places = {"email": "jo\ud800@example.com", "postcode": "941\udc0003", "first_name": "Jo\ud83d"}
    if where in places:
        order["billing"][where] = places[where]
    elif where == "user_agent":
        order["customer_user_agent"] = "Mozilla/5.0 \udfff"
    elif where == "ip":
        order["customer_ip_address"] = "203.0.113.9\ud800"
    elif where == "item_name":
        order["line_items"][0]["name"] = "Shirt \ud800"
    elif where == "order_key":
        order["order_key"] += "\ud800"
    else:
        order = with_meta(order, _ttclid="E.C.P.\ud800", _ttp="\udc00")
    return order


@pytest.mark.parametrize(
    "where", ["email", "postcode", "first_name", "user_agent", "ip", "item_name", "order_key", "click_meta"]
)
def test_a_lone_surrogate_in_a_signed_order_is_replaced_and_the_order_is_sent(webhook, where):
    # json.dumps escapes it as "\ud800": valid JSON, not encodable text.
    status, reply = signed_reply(webhook, json.dumps(_set_surrogate(granted(new_order()), where)).encode())
    assert (status, reply["outcome"]) == (200, "published")
    message = webhook.exactly_one_published()  # it serialised, as UTF-8, all the way to Pub/Sub
    if where == "user_agent":
        assert message["user"]["user_agent"] == "Mozilla/5.0 \ufffd"
    if where == "item_name":
        assert message["properties"]["contents"][0]["content_name"] == "Shirt \ufffd"


def test_a_lone_surrogate_in_the_logged_order_id_is_skipped_with_a_reason(webhook, capsys):
    order = granted(new_order())
    status, reply = signed_reply(webhook, json.dumps({**order, "id": f"{order['id']}\ud800"}).encode())
    assert (status, reply["outcome"]) == (200, "ignored") and "field id" in reply["reason"]
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"ignored"' in x]
    assert line["order_id"] == f"{order['id']}\ufffd"


# --- the 200 "error" answers: an order that failed and could not be parked -------------------


def test_an_order_whose_identity_can_not_be_hashed_is_parked_without_it_and_replays(
    healthy, topic, monkeypatch, capsys
):
    real_build_user = identity.build_user
    broken = [True]

    def failing(raw: Any, region: Any, **kwargs: Any) -> Any:
        if broken[0] and raw.emails:
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")
        return real_build_user(raw, region, **kwargs)

    # Both the flow and the first parking attempt hash the identity; both fail the same way.
    monkeypatch.setattr("shared.receive.orders.build_user", failing)
    monkeypatch.setattr(parking, "build_user", failing)
    order = granted(new_order())
    reply = deliver_to(healthy, order)
    assert reply.status == 202 and reply.body["outcome"] == Kind.PARKED
    assert "without the shopper's identifiers" in reply.body["reason"]
    (record,) = parked_from(capsys.readouterr().out)
    assert record["order"]["user"] == {} and record["consent"] == {"granted": True}
    broken[0] = False
    assert flow.replay(record, healthy).kind == "published"
    (message,) = topic.pull_all(1)
    assert decode_message(message)["event_id"] == reply.body["event_id"]


def test_an_order_that_can_not_be_parked_either_is_refused_with_422_and_logged_as_error(healthy, monkeypatch, capsys):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug near john.doe@example.com")

    monkeypatch.setattr(flow, "process_order_event", broken)
    monkeypatch.setattr(parking, "build_user", broken)
    monkeypatch.setattr(parking, "UserData", broken)
    reply = deliver_to(healthy, granted(new_order()))
    assert reply.status == 422 and reply.body["outcome"] == Kind.REFUSED and reply.body["event_id"]
    assert "could not park it" in reply.body["reason"]
    out = capsys.readouterr().out
    (line,) = [json.loads(x) for x in out.splitlines() if '"outcome": "refused"' in x]
    assert line["severity"] == "ERROR" and "john.doe" not in out


def test_a_bug_before_there_is_an_event_is_refused_not_a_500(webhook, monkeypatch, capsys):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("john.doe@example.com")

    monkeypatch.setattr(handler, "map_order", broken)
    status, reply = signed_reply(webhook, json.dumps(granted(new_order())).encode())
    assert status == 422 and reply["outcome"] == Kind.REFUSED and "internal error (KeyError)" in reply["reason"]
    assert "john.doe" not in capsys.readouterr().out


# --- the body limit is enforced while reading, before the signature check ---------


class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes made as it is read, counting what the function read."""

    def __init__(self, size: int) -> None:
        self.size, self.taken = size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.taken)
        buffer[:n] = b"{" * n
        self.taken += n
        return n


def post_stream(client: Any, stream: CountingStream, headers: dict[str, str], *, declared: int | None) -> Any:
    """POST ``stream`` as a chunked body (no Content-Length) or with a declared one."""
    environ = EnvironBuilder(method="POST", path="/", headers=headers).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    if declared is None:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(declared)
    # What gunicorn (the functions' server) sets: it de-chunks and ends the stream itself.
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True})
    return client.open(Request(environ))


THIRTY_MB = 30 * 1024 * 1024


@pytest.mark.parametrize("declared", [None, THIRTY_MB], ids=["chunked", "content-length"])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed-headers"])
def test_a_30_mb_body_is_refused_with_413_without_being_read(webhook, declared, signed):
    stream = CountingStream(THIRTY_MB)
    headers = {"Content-Type": "application/json"}
    if signed:
        headers = headers_for(b"{}", "order.updated")  # a valid-looking signature over other bytes
    response = post_stream(webhook.client, stream, headers, declared=declared)
    assert response.status_code == 413 and response.get_json()["error"] == "too large"
    # Counted after the whole request, reply included (functions-framework reads what is left of a
    # body after a non-streamed reply): a declared length is refused unread, a chunked body at limit + 1.
    assert stream.taken == (0 if declared else MAX_BODY_BYTES + 1)
    assert webhook.nothing_published()


def test_a_chunked_order_under_the_limit_is_read_and_published(webhook):
    body = json.dumps(granted(new_order())).encode()

    class Exact(CountingStream):
        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), self.size - self.taken, 1000)  # arrives in small chunks
            buffer[:n] = body[self.taken : self.taken + n]
            self.taken += n
            return n

    response = post_stream(webhook.client, Exact(len(body)), headers_for(body, "order.updated"), declared=None)
    assert response.status_code == 200 and response.get_json()["outcome"] == "published"
    webhook.exactly_one_published()


def test_an_unsigned_hostile_body_gets_401_without_being_parsed(webhook, monkeypatch):
    def parse_spy(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed before the signature check")

    monkeypatch.setattr(handler, "parse_json", parse_spy)
    for body in (b"[" * 100_000, b'{"id": "\\ud800", "total": ' + b"9" * 5000 + b"}", b"\xff" * 1000):
        response = webhook.post(body, secret="not-the-secret")
        assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"


# --- what a parked record holds -----------------------------------------------------


def test_product_names_forwarded_to_pubsub_lose_emails_and_phone_numbers(webhook):
    order = granted(new_order())
    order["line_items"][0]["name"] = "Engraving for jo@example.com, call +1 213 373 4253"
    signed_reply(webhook, json.dumps(order).encode())
    name = webhook.exactly_one_published()["properties"]["contents"][0]["content_name"]
    assert "jo@example.com" not in name and "373" not in name and name.startswith("Engraving for")


# --- properties: whatever is sent, no 5xx, and every signed order ends somewhere known ---------

_hostile_text = st.sampled_from(["²", "١٢٣", "\ud800", "x\udfffy", "1_0", "1e400", "NaN", "", " ", "9" * 310])
_huge_int = st.integers(10**300, 10**400) | st.integers(-(10**400), -(10**300))
_finite = st.floats(allow_nan=False, allow_infinity=False)
_value = st.one_of(_hostile_text, _huge_int, st.text(max_size=20), st.integers(-5, 10**6), _finite)
# Kept out of _value, where one in ten fields would spoil the whole body: arrays 1 to 1200 deep, Infinity.
_spoiler = (st.integers(1, 40) | st.integers(1, 1200)).map(lambda n: f"DEEP{n}") | st.just(1e999)


def _usually(valid: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` nine times in ten, else a hostile value, so that most orders get far."""
    return st.integers(0, 9).flatmap(lambda n: valid if n else _value)


def _order_with_hostile_values() -> st.SearchStrategy[dict[str, Any]]:
    item = st.fixed_dictionaries(
        {"product_id": _usually(st.integers(1, 99)), "quantity": _usually(st.integers(1, 3))},
        optional={"price": _value, "name": _value, "sku": _value, "variation_id": _value},
    )
    address = st.fixed_dictionaries(
        {}, optional={k: _value for k in ("first_name", "email", "phone", "city", "state", "postcode", "country")}
    )
    meta = st.fixed_dictionaries({"key": st.sampled_from(["_tt_consent", "_ttclid", "_ttp"]), "value": _value})
    return st.fixed_dictionaries(
        {
            "id": _usually(st.integers(1, 10**12)),
            "status": st.sampled_from(["processing", "completed", "processing", "pending"]),
            "order_key": _usually(st.text(min_size=1, max_size=20)),
            # Mostly granted at checkout, so the order reaches the publish.
            "meta_data": _usually(
                st.lists(meta, max_size=2).map(lambda m: [*m, {"key": "_tt_consent", "value": "granted"}])
            ),
        },
        optional={
            "customer_id": _value,
            "total": _usually(st.sampled_from(["29.35", "0", "1000000"])),
            "currency": _usually(st.sampled_from(["USD", "EUR"])),
            "customer_user_agent": _value,
            "customer_ip_address": _value,
            "date_paid_gmt": _value,
            "billing": address,
            "shipping": address,
            "line_items": st.lists(item, max_size=3),
            "_extra": _spoiler,
        },
    )


def _encode(document: Any) -> bytes:
    """JSON with "\\ud800" escapes kept, and DEEPn markers turned into arrays n levels deep."""
    text = json.dumps(document)
    return re.sub(r'"DEEP(\d+)"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text).encode()


def _assert_signed_outcome(reply: Reply) -> None:
    event(str(reply.body.get("outcome")) + " " + str(reply.body.get("reason"))[:30])
    assert reply.status < 500
    outcome = reply.body.get("outcome")
    assert outcome in SIGNED_OUTCOMES, reply.body  # never "error", never anything unknown
    assert reply.status in SIGNED_OUTCOMES[outcome], reply.body
    assert reply.body.get("reason") or outcome in ("published", "parked")
    if outcome in ("published", Kind.PARKED, Kind.REFUSED):
        assert reply.body.get("event_id")


_PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@_PROPERTY_SETTINGS
@given(order=_order_with_hostile_values())
def test_any_signed_order_shaped_body_ends_published_skipped_refused_or_parked(healthy, order):
    body = _encode(order)
    reply = handle(headers_for(body, "order.updated"), body, lambda: healthy)
    _assert_signed_outcome(reply)


@_PROPERTY_SETTINGS
@given(order=order_shaped, topic=st.sampled_from(["order.updated", "order.created", "order.deleted", ""]))
def test_any_signed_json_document_gets_a_known_outcome_and_never_a_5xx(healthy, order, topic):
    body = _encode(order)
    reply = handle(headers_for(body, topic), body, lambda: healthy)
    _assert_signed_outcome(reply)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2000), signature=st.sampled_from([None, "", "x" * 44, "A" * 200]))
def test_unsigned_random_bytes_get_401_and_are_not_parsed(healthy, body, signature):
    headers = {**headers_for(body, "order.updated"), "X-WC-Webhook-Signature": signature or ""}
    if body and signature is None:
        headers["X-WC-Webhook-Signature"] = woocommerce_signature(body, SECRET + "x")
    reply = handle(headers, body, lambda: healthy)
    assert reply.status == 401 and reply.body["error"] == "unauthorized"

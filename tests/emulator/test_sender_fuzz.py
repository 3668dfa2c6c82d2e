"""Hostile push bodies against the real sender function (functions-framework app, Firestore emulator).

Only Pub/Sub can call the sender in production, but a bug upstream or a
forged call must still never make it crash: whatever is POSTed is answered
4xx (not a push at all) or 2xx (a push: a malformed message is recorded as a
dead event and acknowledged, so Pub/Sub does not bring it back forever). The
only 5xx the sender gives is its deliberate 503 "retry later", and none of
these bodies is transient trouble.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.domain.untrusted import clean_text
from shared.infra.store import DEAD_EVENTS, doc_id
from shared.send.decode import MalformedMessage, decode_message
from tests.emulator.test_sender import make_sender, sandbox  # noqa: F401 (fixtures)
from tests.unit.test_delivery import make_envelope

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
ENVELOPE_KEYS = ["pixel_code", "event", "event_id", "event_time", "user", "properties", "consent", "source"]


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@st.composite
def message_data(draw: st.DrawFn) -> Any:
    """What ``message.data`` may hold: base64 of anything, or not base64, or not a string."""
    kind = draw(st.sampled_from(["envelope", "json", "bytes", "deep", "raw"]))
    if kind == "envelope":  # a real envelope with one field broken
        document = make_envelope().model_dump(exclude_none=True)
        document[draw(st.sampled_from(ENVELOPE_KEYS))] = draw(json_values)
        payload = json.dumps(document).encode()
    elif kind == "json":
        payload = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        payload = draw(st.binary(max_size=200))
    elif kind == "deep":
        payload = _deep(draw(st.integers(30, 5000)))
    else:
        return draw(json_values)
    return base64.b64encode(payload).decode()


@st.composite
def push_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "message", "push"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "message":  # a push whose message has any shape at all
        return json.dumps({"message": draw(json_values), "subscription": "s"}).encode()
    message = {"data": draw(message_data()), "attributes": draw(st.dictionaries(st.text(max_size=8), json_values))}
    message_id = draw(st.one_of(st.none(), st.text(max_size=40), json_values))
    if message_id is not None:
        message["messageId"] = message_id
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


SURROGATE_PIXEL = (
    b'{"message": {"messageId": "surrogate-pixel", "data": "'
    + base64.b64encode(b'{"pixel_code": "\\ud800", "event_id": "e\\udfff", "event": "Purchase"}')
    + b'"}}'
)


def _expected_record_id(message: Any) -> str:
    """Where the sender records a malformed message: by message id, else by the digest of its data."""
    candidate = message.get("messageId", message.get("message_id")) if isinstance(message, dict) else None
    if isinstance(candidate, str) and candidate:
        return doc_id("malformed", clean_text(candidate[:200]))
    data = message.get("data") if isinstance(message, dict) else None
    raw = clean_text(data).encode() if isinstance(data, str) else b""
    return doc_id("malformed", hashlib.sha256(raw).hexdigest())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=push_bodies())
@example(body=SURROGATE_PIXEL)
@example(body=_deep(100_000))
@example(body=b'{"message": ' + _deep(2000) + b"}")
@example(body=b'{"message": {"data": "' + base64.b64encode(_deep(3000)) + b'", "messageId": "deep-data"}}')
@example(body=b'{"message": {"data": "e30=", "messageId": 1' + b"0" * 5000 + b"}}")
@example(body=b'{"message": {"data": "e30=", "publishTime": 1e999}}')
@example(body=b'{"message": {"data": "\\ud800", "messageId": "\\udc00"}}')
def test_any_push_body_is_answered_without_a_5xx_and_malformed_messages_are_recorded(
    make_sender: Any,  # noqa: F811
    store: Any,
    body: bytes,
) -> None:
    sender = getattr(make_sender, "_built", None)
    if sender is None:
        sender = make_sender._built = make_sender()  # one app for every example: clients are reused
    response = sender.app.test_client().post("/", data=body, content_type="application/json")
    assert response.status_code < 500, (response.status_code, response.data[:300])
    try:
        document = json.loads(body.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        document = None
    if response.status_code != 200:
        assert response.status_code in (400, 413)
        assert response.get_json()["reason"]  # a reason a person can act on
        return
    assert isinstance(document, dict) and "message" in document  # only pushes are acknowledged
    message = document["message"]
    try:
        decode_message(message)
    except (MalformedMessage, RecursionError, ValueError):
        record = store.collection(DEAD_EVENTS).document(_expected_record_id(message)).get()
        assert record.exists and record.to_dict()["kind"] == "malformed"
        assert response.get_json()["outcome"] == "dead_malformed"
    else:
        # "skipped": an order envelope whose drawn event_time lies outside ORDER_MAX_EVENT_AGE_DAYS is never sent.
        assert response.get_json()["outcome"] in ("sent", "duplicate", "dead", "skipped")


def test_a_push_body_over_the_limit_is_refused_before_it_is_read(make_sender: Any) -> None:  # noqa: F811
    from shared.send.decode import MAX_PUSH_BYTES

    sender = make_sender()
    response = sender.app.test_client().post(
        "/", data=b"{" + b" " * (MAX_PUSH_BYTES + 10) + b"}", content_type="application/json"
    )
    assert response.status_code == 413 and "larger than" in response.get_json()["reason"]


def test_one_malformed_message_in_a_burst_fails_only_itself(
    make_sender: Any,  # noqa: F811
    sandbox: Any,  # noqa: F811
    store: Any,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import push_body

    sender = make_sender()
    good = [make_envelope() for _ in range(8)]
    bodies = [push_body(e.to_json_bytes()) for e in good]
    poison_id = uuid.uuid4().hex
    bodies.insert(3, {"message": {"data": base64.b64encode(_deep(5000)).decode(), "messageId": poison_id}})
    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(sender.push, bodies))
    assert statuses == [200] * len(bodies)
    for envelope in good:
        assert len(sandbox.events(event_id=envelope.event_id)) == 1
    assert store.collection(DEAD_EVENTS).document(doc_id("malformed", poison_id)).get().exists


@pytest.mark.parametrize("surrogate_field", ["pixel_code", "event_id"])
def test_a_surrogate_in_a_broken_envelope_still_gives_a_dead_record(
    make_sender: Any,  # noqa: F811
    store: Any,
    surrogate_field: str,
) -> None:
    sender = make_sender()
    document = make_envelope().model_dump(exclude_none=True)
    document[surrogate_field] = "bad\ud800"
    del document["consent"]  # broken, so it is recorded rather than sent
    data = json.dumps(document).encode()  # ASCII escapes: \ud800 travels as JSON text
    message_id = uuid.uuid4().hex
    body = {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id}}
    assert sender.app.test_client().post("/", json=body).status_code == 200
    record = store.collection(DEAD_EVENTS).document(doc_id("malformed", message_id)).get().to_dict()
    assert record[surrogate_field] == "bad\ufffd" and "consent" in record["reason"]

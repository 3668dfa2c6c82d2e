"""The local TikTok Events API sandbox: the track contract, fault injection, inspection endpoints, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient

from sandbox import TRACK_PATH, create_app
from sandbox.__main__ import parse_args

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token"
PIXEL = "CTESTPIXEL0001"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# The reference vectors of shared/reference/tiktok-events-api.md (input -> sha256 hex).
EMAIL_HASH = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"
PHONE_HASH = "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"
EXTERNAL_ID_HASH = "80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b"
FIRST_NAME_HASH = "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a"
ZIP_HASH = "c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead"


def make_event(event_id: str = "order:1001:Purchase", **changes: Any) -> dict[str, Any]:
    """A complete, valid web Purchase as the reference file shows it."""
    event: dict[str, Any] = {
        "event": "Purchase",
        "event_time": int(time.time()) - 60,
        "event_id": event_id,
        "user": {
            "email": [EMAIL_HASH],
            "phone": [PHONE_HASH],
            "external_id": [EXTERNAL_ID_HASH],
            "first_name": FIRST_NAME_HASH,
            "last_name": FIRST_NAME_HASH.upper(),
            "zip_code": ZIP_HASH,
            "city": "newyork",
            "state": "ny",
            "country": "us",
            "ttclid": "E.C.P.raw-click-id",
            "ttp": "raw-ttp-cookie-value",
            "ip": "203.0.113.24",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "locale": "en-US",
        },
        "properties": {
            "currency": "USD",
            "value": 125.0,
            "content_type": "product",
            "contents": [{"content_id": "SKU1", "content_name": "Blue Shirt", "price": 25.0, "quantity": 5}],
            "order_id": "1001",
        },
        "page": {"url": "https://shop.example/products/x", "referrer": "https://www.tiktok.com/"},
        "limited_data_use": False,
    }
    event.update(changes)
    return event


def make_body(*events: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_source": "web", "event_source_id": PIXEL, "data": list(events) or [make_event()]}
    body.update(changes)
    return body


@pytest.fixture
def client() -> FlaskClient:
    return create_app(TOKEN).test_client()


def post(client: FlaskClient, body: Any, token: str | None = TOKEN, **kwargs: Any) -> Any:
    headers = {"Access-Token": token} if token is not None else {}
    if "data" in kwargs:
        return client.post(TRACK_PATH, headers=headers, **kwargs)
    return client.post(TRACK_PATH, json=body, headers=headers, **kwargs)


def stored(client: FlaskClient, **filters: str) -> list[dict[str, Any]]:
    return client.get("/sandbox/events", query_string=filters).get_json()["events"]


def requests_log(client: FlaskClient) -> list[dict[str, Any]]:
    return client.get("/sandbox/requests").get_json()["requests"]


def set_faults(client: FlaskClient, **config: Any) -> None:
    response = client.post("/sandbox/faults", json=config)
    assert response.status_code == 200, response.get_json()


# -- happy path ------------------------------------------------------------------------------


def test_a_valid_event_is_accepted_stored_and_listed_with_where_and_when_it_arrived(client):
    event = make_event()
    before = time.time()
    response = post(client, make_body(event, test_event_code="TEST123"))

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["code"] == 0 and answer["message"] == "OK" and answer["data"] == {}
    assert isinstance(answer["request_id"], str) and answer["request_id"]
    [kept] = stored(client)
    assert {k: kept[k] for k in event} == event  # as received
    assert kept["event_source_id"] == PIXEL and kept["test_event_code"] == "TEST123"
    assert kept["request_id"] == answer["request_id"]
    assert isinstance(kept["received_at"], float) and before <= kept["received_at"] <= time.time()


def test_test_event_code_is_null_when_absent_and_request_ids_are_unique(client):
    first = post(client, make_body(make_event("a"))).get_json()
    second = post(client, make_body(make_event("b"))).get_json()
    assert first["request_id"] != second["request_id"]
    assert [e["test_event_code"] for e in stored(client)] == [None, None]


def test_events_are_filtered_by_event_id_and_pixel():
    client = create_app(TOKEN, {PIXEL, "COTHERPIXEL"}).test_client()
    post(client, make_body(make_event("a"), make_event("b")))
    post(client, make_body(make_event("a"), event_source_id="COTHERPIXEL"))

    assert [(e["event_id"], e["event_source_id"]) for e in stored(client, event_id="a")] == [
        ("a", PIXEL),
        ("a", "COTHERPIXEL"),
    ]
    assert [e["event_id"] for e in stored(client, pixel="COTHERPIXEL")] == ["a"]
    assert [e["event_id"] for e in stored(client, event_id="b", pixel=PIXEL)] == ["b"]
    assert stored(client, event_id="missing") == []


def test_a_minimal_event_and_every_event_source_are_accepted(client):
    minimal = {"event": "CustomThing", "event_time": int(time.time()), "user": {}}
    for source in ("web", "app", "offline", "crm"):
        assert post(client, make_body(minimal, event_source=source)).get_json()["code"] == 0
    assert len(stored(client)) == 4


def test_the_reference_vectors_are_accepted_as_hashed_values_in_both_shapes(client):
    as_strings = make_event(
        "strings",
        user={
            "email": EMAIL_HASH,
            "phone": PHONE_HASH,
            "external_id": EXTERNAL_ID_HASH,
            "first_name": FIRST_NAME_HASH,
            "zip_code": ZIP_HASH,
        },
    )
    upper_lists = make_event(
        "lists", user={"email": [EMAIL_HASH.upper(), PHONE_HASH], "external_id": [EXTERNAL_ID_HASH]}
    )
    answer = post(client, make_body(as_strings, upper_lists)).get_json()
    assert answer["code"] == 0, answer["message"]
    assert [e["user"] for e in stored(client)] == [as_strings["user"], upper_lists["user"]]


def test_a_full_batch_of_1000_events_is_accepted(client):
    events = [make_event(f"e{i}") for i in range(1000)]
    assert post(client, make_body(*events)).get_json()["code"] == 0
    assert len(stored(client)) == 1000


# -- access token ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 40104),
        ({"Access-Token": ""}, 40104),
        ({"Authorization": f"Bearer {TOKEN}"}, 40104),
        ({"Access-Token": "wrong-token"}, 40105),
        ({"Access-Token": TOKEN.upper()}, 40105),
    ],
    ids=["missing", "empty", "bearer-instead", "wrong", "wrong-case"],
)
def test_a_missing_or_wrong_access_token_is_refused_with_http_200_and_nothing_is_stored(client, headers, code):
    response = client.post(TRACK_PATH, json=make_body(), headers=headers)
    assert response.status_code == 200
    assert response.get_json()["code"] == code
    assert stored(client) == []


def test_the_access_token_header_name_is_case_insensitive(client):
    response = client.post(TRACK_PATH, json=make_body(), headers={"access-token": TOKEN})
    assert response.get_json()["code"] == 0


def test_a_bearer_token_gets_a_hint_about_the_right_header(client):
    response = client.post(TRACK_PATH, json=make_body(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert "Access-Token header" in response.get_json()["message"]


# -- body and top level ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"a string"', "application/json"),
        (b'{"event_source": "web", "value": NaN}', "application/json"),
        (b"\xff\xfe", "application/json"),
        (json.dumps(make_body()).encode(), "text/plain"),
        (json.dumps(make_body()).encode(), "application/x-www-form-urlencoded"),
    ],
    ids=["not-json", "array", "string", "nan", "not-utf8", "text-plain", "form"],
)
def test_a_body_that_is_not_a_json_object_gets_40000(client, data, content_type):
    response = post(client, None, data=data, content_type=content_type)
    answer = response.get_json()
    assert response.status_code == 200 and answer["code"] == 40000 and answer["message"]
    assert stored(client) == []


def test_json_with_a_charset_is_accepted(client):
    data = json.dumps(make_body()).encode()
    assert post(client, None, data=data, content_type="application/json; charset=utf-8").get_json()["code"] == 0


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"event_source": "website"}, "event_source"),
        ({"event_source": None}, "event_source"),
        ({"event_source_id": ""}, "event_source_id"),
        ({"event_source_id": 12345}, "event_source_id"),
        ({"test_event_code": 12345}, "test_event_code"),
        ({"test_event_code": ""}, "test_event_code"),
        ({"pixel_code": PIXEL}, "pixel_code"),
    ],
    ids=[
        "bad-source",
        "null-source",
        "empty-source-id",
        "numeric-source-id",
        "numeric-test-code",
        "empty-test-code",
        "v1-pixel-code",
    ],
)
def test_top_level_violations_get_40002_naming_the_field(client, changes, path):
    answer = post(client, make_body(**changes)).get_json()
    assert answer["code"] == 40002
    assert answer["message"].startswith(f"Invalid value for {path}:")
    assert stored(client) == []


def test_a_missing_event_source_id_gets_40002(client):
    body = make_body()
    del body["event_source_id"]
    assert post(client, body).get_json()["code"] == 40002


def test_a_pixel_outside_the_configured_ones_gets_40001():
    client = create_app(TOKEN, {PIXEL}).test_client()
    answer = post(client, make_body(event_source_id="CSOMEONEELSE")).get_json()
    assert answer["code"] == 40001 and "CSOMEONEELSE" in answer["message"]
    assert post(client, make_body()).get_json()["code"] == 0
    assert [e["event_source_id"] for e in stored(client)] == [PIXEL]


@pytest.mark.parametrize(
    "data",
    [None, {}, "events", [], [make_event(f"e{i}") for i in range(1001)]],
    ids=["null", "object", "string", "empty", "1001"],
)
def test_data_that_is_not_a_list_of_1_to_1000_events_gets_40061(client, data):
    assert post(client, make_body(data=data)).get_json()["code"] == 40061
    assert stored(client) == []


def test_missing_data_gets_40061(client):
    body = make_body()
    del body["data"]
    assert post(client, body).get_json()["code"] == 40061


# -- event level -----------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]
NOW = int(time.time())


def set_at(path: str, value: Any) -> Mutation:
    """A mutation that sets a dotted path (``user.email``) of an event; ``...`` deletes it."""

    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        if value is ...:
            del target[last]
        else:
            target[last] = value

    return mutate


# (mutation, expected code, path named in the message)
EVENT_VIOLATIONS: dict[str, tuple[Mutation, int, str]] = {
    "event-missing": (set_at("event", ...), 40002, "event"),
    "event-empty": (set_at("event", ""), 40002, "event"),
    "event-number": (set_at("event", 5), 40002, "event"),
    "time-missing": (set_at("event_time", ...), 40002, "event_time"),
    "time-string": (set_at("event_time", str(NOW)), 40002, "event_time"),
    "time-float": (set_at("event_time", float(NOW)), 40002, "event_time"),
    "time-bool": (set_at("event_time", True), 40002, "event_time"),
    "time-milliseconds": (set_at("event_time", NOW * 1000), 40002, "event_time"),
    "time-before-2015": (set_at("event_time", 1_400_000_000), 40002, "event_time"),
    "time-two-days-ahead": (set_at("event_time", NOW + 2 * 86_400), 40002, "event_time"),
    "event-id-number": (set_at("event_id", 820982911946154508), 40002, "event_id"),
    "event-id-empty": (set_at("event_id", ""), 40002, "event_id"),
    "user-missing": (set_at("user", ...), 40002, "user"),
    "user-list": (set_at("user", []), 40002, "user"),
    "email-raw": (set_at("user.email", "john.doe@example.com"), 40062, "user.email"),
    "email-raw-in-list": (set_at("user.email", [EMAIL_HASH, "john.doe@example.com"]), 40062, "user.email[1]"),
    "email-empty-string": (set_at("user.email", ""), 40062, "user.email"),
    "email-empty-list": (set_at("user.email", []), 40002, "user.email"),
    "email-number": (set_at("user.email", 5), 40002, "user.email"),
    "email-null": (set_at("user.email", None), 40002, "user.email"),
    "email-empty-hash": (set_at("user.email", [EMPTY_SHA256]), 40002, "user.email[0]"),
    "email-empty-hash-upper": (set_at("user.email", EMPTY_SHA256.upper()), 40002, "user.email"),
    "email-63-hex": (set_at("user.email", EMAIL_HASH[:63]), 40062, "user.email"),
    "phone-e164": (set_at("user.phone", "+12133734253"), 40062, "user.phone"),
    "external-id-raw": (set_at("user.external_id", ["user_123"]), 40062, "user.external_id[0]"),
    "first-name-raw": (set_at("user.first_name", "john"), 40062, "user.first_name"),
    "first-name-list": (set_at("user.first_name", [FIRST_NAME_HASH]), 40002, "user.first_name"),
    "last-name-raw": (set_at("user.last_name", "doe"), 40062, "user.last_name"),
    "zip-raw": (set_at("user.zip_code", "94107"), 40062, "user.zip_code"),
    "zip-empty-hash": (set_at("user.zip_code", EMPTY_SHA256), 40002, "user.zip_code"),
    "ttclid-hashed": (set_at("user.ttclid", EMAIL_HASH), 40002, "user.ttclid"),
    "ttp-hashed": (set_at("user.ttp", EMAIL_HASH), 40002, "user.ttp"),
    "ip-hashed": (set_at("user.ip", EMAIL_HASH), 40002, "user.ip"),
    "ip-not-an-address": (set_at("user.ip", "unknown"), 40002, "user.ip"),
    "user-agent-number": (set_at("user.user_agent", 5), 40002, "user.user_agent"),
    "locale-hashed": (set_at("user.locale", EMAIL_HASH.upper()), 40002, "user.locale"),
    "city-number": (set_at("user.city", 5), 40002, "user.city"),
    "state-list": (set_at("user.state", ["ny"]), 40002, "user.state"),
    "country-three-letters": (set_at("user.country", "usa"), 40002, "user.country"),
    "user-unknown-field": (set_at("user.phone_number", PHONE_HASH), 40002, "user.phone_number"),
    "properties-list": (set_at("properties", []), 40002, "properties"),
    "value-string": (set_at("properties.value", "125.00"), 40002, "properties.value"),
    "value-bool": (set_at("properties.value", True), 40002, "properties.value"),
    "value-negative": (set_at("properties.value", -1), 40002, "properties.value"),
    "currency-lower": (set_at("properties.currency", "usd"), 40002, "properties.currency"),
    "currency-two-letters": (set_at("properties.currency", "US"), 40002, "properties.currency"),
    "content-type-sku": (set_at("properties.content_type", "sku"), 40002, "properties.content_type"),
    "contents-object": (set_at("properties.contents", {"content_id": "SKU1"}), 40002, "properties.contents"),
    "contents-item-string": (set_at("properties.contents", ["SKU1"]), 40002, "properties.contents[0]"),
    "contents-price-string": (
        set_at("properties.contents", [{"price": "25.00"}]),
        40002,
        "properties.contents[0].price",
    ),
    "contents-quantity-float": (
        set_at("properties.contents", [{"quantity": 2.5}]),
        40002,
        "properties.contents[0].quantity",
    ),
    "contents-id-number": (
        set_at("properties.contents", [{"content_id": 123}]),
        40002,
        "properties.contents[0].content_id",
    ),
    "properties-quantity-string": (set_at("properties.quantity", "5"), 40002, "properties.quantity"),
    "order-id-number": (set_at("properties.order_id", 1001), 40002, "properties.order_id"),
    "page-string": (set_at("page", "https://shop.example/"), 40002, "page"),
    "page-url-number": (set_at("page.url", 5), 40002, "page.url"),
    "page-referrer-null": (set_at("page.referrer", None), 40002, "page.referrer"),
    "limited-data-use-string": (set_at("limited_data_use", "false"), 40002, "limited_data_use"),
    "v1-context": (set_at("context", {"ip": "203.0.113.24"}), 40002, "context"),
}


@pytest.mark.parametrize(("mutate", "code", "path"), EVENT_VIOLATIONS.values(), ids=EVENT_VIOLATIONS.keys())
def test_each_event_violation_gets_its_code_names_the_path_and_stores_nothing(client, mutate, code, path):
    bad = make_event("bad")
    mutate(bad)
    answer = post(client, make_body(make_event("good"), bad)).get_json()
    assert answer["code"] == code, answer["message"]
    assert f"data[1].{path}" in answer["message"]
    assert answer["data"] == {"failed_events": [1]}
    assert stored(client) == []


def test_a_numeric_event_id_gets_tiktoks_not_a_valid_string_message(client):
    answer = post(client, make_body(make_event(event_id=42))).get_json()
    assert answer["code"] == 40002
    assert answer["message"] == "Invalid value for data[0].event_id: not a valid string."


def test_one_bad_event_fails_the_whole_batch_and_every_bad_index_is_reported(client):
    events = [make_event(f"e{i}") for i in range(6)]
    events[3]["event_time"] = str(events[3]["event_time"])
    events[5]["event_id"] = 5
    answer = post(client, make_body(*events)).get_json()
    assert answer["code"] == 40002
    assert answer["message"].startswith("Invalid value for data[3].event_time:")
    assert answer["data"] == {"failed_events": [3, 5]}
    assert stored(client) == []
    assert requests_log(client)[0]["code"] == 40002


def test_refusals_never_echo_personal_data(client, capsys):
    raw_email = "jane.roe@example.com"
    answer = post(client, make_body(make_event(user={"email": raw_email, "first_name": "Jane"})))
    assert answer.get_json()["code"] == 40062
    assert raw_email not in answer.get_data(as_text=True)
    assert raw_email not in capsys.readouterr().out


# -- fault injection -------------------------------------------------------------------------


def test_http_5xx_fault_answers_503_with_a_json_body_and_stores_nothing(client):
    set_faults(client, error_rate=1.0, http_5xx=1)
    response = post(client, make_body())
    assert response.status_code == 503
    assert response.get_json()["code"] != 0 and response.get_json()["request_id"]
    assert stored(client) == []
    [entry] = requests_log(client)
    assert entry["fault"] == "http_5xx" and entry["http_status"] == 503 and entry["event_count"] == 1


def test_throttle_fault_answers_http_200_with_40100_and_stores_nothing(client):
    set_faults(client, error_rate=1.0, throttle=1)
    response = post(client, make_body())
    assert response.status_code == 200
    assert response.get_json()["code"] == 40100
    assert stored(client) == []
    assert requests_log(client)[0]["code"] == 40100


def test_timeout_fault_holds_the_answer_for_timeout_seconds_and_stores_nothing(client):
    set_faults(client, error_rate=1.0, timeout=1, timeout_seconds=0.05)
    started = time.monotonic()
    response = post(client, make_body())
    assert time.monotonic() - started >= 0.05
    assert response.status_code == 504
    assert stored(client) == []
    assert requests_log(client)[0]["fault"] == "timeout"


def test_a_client_with_a_shorter_timeout_gives_up_before_a_timeout_fault_answers():
    """The point of the timeout fault, seen from a real HTTP client."""
    with running_sandbox() as sandbox:
        url = sandbox.url
        httpx.post(f"{url}/sandbox/faults", json={"error_rate": 1.0, "timeout": 1, "timeout_seconds": 1.0}, timeout=5)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + TRACK_PATH, json=make_body(), headers={"Access-Token": TOKEN}, timeout=0.2)
        assert httpx.get(f"{url}/sandbox/events", timeout=5).json()["events"] == []


def test_latency_is_added_to_every_track_request(client):
    set_faults(client, latency_ms=60)
    started = time.monotonic()
    assert post(client, make_body()).get_json()["code"] == 0
    assert time.monotonic() - started >= 0.06


def test_weights_without_an_error_rate_inject_nothing(client):
    set_faults(client, error_rate=0.0, http_5xx=1, throttle=1, timeout=1)
    codes = [post(client, make_body(make_event(f"e{i}"))).get_json()["code"] for i in range(20)]
    assert codes == [0] * 20


def test_a_seed_replays_the_same_faults():
    def outcomes() -> list[tuple[int, int]]:
        client = create_app(TOKEN).test_client()
        set_faults(client, error_rate=0.5, http_5xx=1, throttle=1, seed=7)
        responses = [post(client, make_body(make_event(f"e{i}"))) for i in range(40)]
        return [(r.status_code, r.get_json()["code"]) for r in responses]

    first, second = outcomes(), outcomes()
    assert first == second
    # At 0.5 with equal weights, 40 requests see normal answers, 503s and throttles alike.
    assert set(first) == {(200, 0), (503, 50002), (200, 40100)}


def test_a_fault_mix_at_error_rate_one_produces_only_the_weighted_kinds(client):
    set_faults(client, error_rate=1.0, http_5xx=1, throttle=3, seed=1)
    kinds = [post(client, make_body(make_event(f"e{i}"))) for i in range(40)]
    assert {(r.status_code, r.get_json()["code"]) for r in kinds} <= {(503, 50002), (200, 40100)}
    assert stored(client) == []
    assert {e["fault"] for e in requests_log(client)} == {"http_5xx", "throttle"}


def test_fail_event_ids_refuses_requests_carrying_them_and_names_the_index(client):
    set_faults(client, fail_event_ids=["poison"])
    answer = post(client, make_body(make_event("ok-1"), make_event("poison"), make_event("ok-2"))).get_json()
    assert answer["code"] == 40002
    assert "data[1].event_id" in answer["message"]
    assert answer["data"] == {"failed_events": [1]}
    assert stored(client) == []
    # The sender isolates the bad event; the rest then goes through.
    assert post(client, make_body(make_event("ok-1"), make_event("ok-2"))).get_json()["code"] == 0
    assert [e["event_id"] for e in stored(client)] == ["ok-1", "ok-2"]


def test_reject_token_refuses_even_the_right_token_until_faults_are_reset(client):
    set_faults(client, reject_token=True)
    assert post(client, make_body()).get_json()["code"] == 40105
    assert client.delete("/sandbox/faults").status_code == 200
    assert post(client, make_body()).get_json()["code"] == 0
    assert len(stored(client)) == 1


def test_reject_token_refuses_every_request_even_when_random_faults_are_on(client):
    set_faults(client, reject_token=True, error_rate=1.0, http_5xx=1)
    answers = [post(client, make_body(make_event(f"e{i}"))) for i in range(5)]
    assert [(r.status_code, r.get_json()["code"]) for r in answers] == [(200, 40105)] * 5


def test_faults_can_be_read_back_and_reset_to_defaults(client):
    set_faults(client, error_rate=0.25, throttle=2, latency_ms=5, fail_event_ids=["x"], seed=3)
    shown = client.get("/sandbox/faults").get_json()["faults"]
    assert shown["error_rate"] == 0.25 and shown["throttle"] == 2 and shown["latency_ms"] == 5
    assert shown["fail_event_ids"] == ["x"] and shown["seed"] == 3 and shown["timeout_seconds"] == 15
    reset = client.delete("/sandbox/faults").get_json()["faults"]
    assert reset == client.get("/sandbox/faults").get_json()["faults"]
    assert reset["error_rate"] == 0 and reset["fail_event_ids"] == [] and reset["reject_token"] is False


@pytest.mark.parametrize(
    "config",
    [
        {"error_rate": 1.5, "http_5xx": 1},
        {"error_rate": -0.1},
        {"error_rate": "0.5", "http_5xx": 1},
        {"error_rate": 0.5},
        {"error_rate": 0.5, "throttle": -1},
        {"error_rates": 0.5},
        {"latency_ms": -1},
        {"latency_ms": 1.5},
        {"latency_ms": 10_000_000},
        {"timeout_seconds": 0},
        {"timeout_seconds": "15"},
        {"seed": "7"},
        {"seed": True},
        {"fail_event_ids": "poison"},
        {"fail_event_ids": [1]},
        {"reject_token": "yes"},
        [0.5],
    ],
    ids=lambda config: json.dumps(config),
)
def test_invalid_fault_configuration_gets_http_400_with_a_reason(client, config):
    response = client.post("/sandbox/faults", json=config)
    assert response.status_code == 400
    assert response.get_json()["reason"]
    assert client.get("/sandbox/faults").get_json()["faults"]["error_rate"] == 0  # unchanged


def test_fault_configuration_that_is_not_json_gets_http_400(client):
    response = client.post("/sandbox/faults", data=b"{error_rate: 1}", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["reason"]


# -- request log, housekeeping, routes -------------------------------------------------------


def test_the_request_log_counts_every_track_request_including_refused_and_faulted_ones(client):
    event = make_event("order:7:Purchase")
    post(client, make_body(event))
    post(client, make_body(event, test_event_code="TEST1"))
    post(client, make_body(event), token="wrong")
    set_faults(client, error_rate=1.0, http_5xx=1)
    post(client, make_body(event, make_event("other")))

    log = requests_log(client)
    assert [(e["code"], e["event_count"], e["test_event_code"]) for e in log] == [
        (0, 1, None),
        (0, 1, "TEST1"),
        (40105, 1, None),
        (50002, 2, None),
    ]
    assert all(e["event_source_id"] == PIXEL and isinstance(e["received_at"], float) for e in log)
    assert len({e["request_id"] for e in log}) == 4
    assert len(stored(client, event_id="order:7:Purchase")) == 2  # stored as sent; deduplication is TikTok's job


def test_deleting_events_clears_events_and_the_request_log_but_keeps_faults(client):
    post(client, make_body())
    set_faults(client, latency_ms=1)
    response = client.delete("/sandbox/events")
    assert response.status_code == 200
    assert stored(client) == [] and requests_log(client) == []
    assert client.get("/sandbox/faults").get_json()["faults"]["latency_ms"] == 1


def test_health_unknown_routes_and_wrong_methods_answer_json(client):
    assert client.get("/").get_json() == {"status": "ok"}
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.is_json
    wrong_method = client.get(TRACK_PATH)
    assert wrong_method.status_code == 405 and wrong_method.is_json and "POST" in wrong_method.headers["Allow"]
    no_slash = client.post(TRACK_PATH.rstrip("/"), json=make_body(), headers={"Access-Token": TOKEN})
    assert no_slash.status_code == 404 and "trailing slash" in no_slash.get_json()["message"]
    assert stored(client) == []


def test_each_request_is_logged_as_one_json_line_without_token_or_event_content(client, capsys):
    capsys.readouterr()
    post(client, make_body(make_event("logged")))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["code"] == 0 and record["status"] == 200 and record["event_count"] == 1
    assert TOKEN not in lines[0] and EMAIL_HASH not in lines[0] and "203.0.113.24" not in lines[0]


def test_create_app_refuses_an_empty_token():
    with pytest.raises(ValueError, match="token"):
        create_app("")


# -- command line ----------------------------------------------------------------------------


def test_cli_defaults_come_from_the_environment_and_flags_win():
    args = parse_args([], {"TIKTOK_ACCESS_TOKEN": "env-token", "SANDBOX_PORT": "9191"})
    assert (args.host, args.port, args.token, args.pixel) == ("127.0.0.1", 9191, "env-token", None)
    args = parse_args(["--port", "9000", "--token", "flag", "--pixel", "A", "--pixel", "B"], {"SANDBOX_PORT": "1"})
    assert (args.port, args.token, args.pixel) == (9000, "flag", ["A", "B"])
    assert parse_args(["--token", "t"], {}).port == 8090


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        ([], {}),
        (["--token", ""], {}),
        (["--token", "t"], {"SANDBOX_PORT": "http"}),
        (["--token", "t", "--port", "0"], {}),
    ],
    ids=["no-token", "empty-token", "bad-env-port", "port-zero"],
)
def test_cli_refuses_a_missing_token_or_a_bad_port(argv, environ, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv, environ)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SandboxProcess:
    url: str
    output: str = ""  # everything the process printed, filled in once it has stopped


@contextmanager
def running_sandbox(*extra: str) -> Iterator[SandboxProcess]:
    """``python -m sandbox`` as a real process on a free port, ready to answer, stopped on exit."""
    port = free_port()
    argv = [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port), "--token", TOKEN, *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sandbox = SandboxProcess(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sandbox exited early with {process.returncode}")
            try:
                if httpx.get(sandbox.url + "/", timeout=0.5).json() == {"status": "ok"}:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("sandbox did not answer GET / within 20s")
            time.sleep(0.05)
        yield sandbox
    finally:
        process.terminate()
        try:
            sandbox.output = process.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            sandbox.output = process.communicate()[0]


def test_python_m_sandbox_serves_the_api_over_http():
    with running_sandbox("--pixel", PIXEL) as sandbox:
        url = sandbox.url
        response = httpx.post(
            url + TRACK_PATH, json=make_body(make_event("over-http")), headers={"Access-Token": TOKEN}, timeout=5
        )
        assert response.status_code == 200 and response.json()["code"] == 0
        events = httpx.get(f"{url}/sandbox/events", params={"event_id": "over-http"}, timeout=5).json()["events"]
        assert [e["event_source_id"] for e in events] == [PIXEL]
        assert events[0]["request_id"] == response.json()["request_id"]
    lines = [json.loads(line) for line in sandbox.output.splitlines() if line.strip()]  # every line is JSON
    assert any(line.get("request_id") == response.json()["request_id"] for line in lines)
    assert TOKEN not in sandbox.output


def test_the_served_sandbox_answers_concurrent_requests_in_parallel_and_loses_none():
    """Threaded server, sleeps outside the lock: 16 requests with 300 ms latency take far less than 16 x 300 ms."""
    with running_sandbox() as sandbox:
        httpx.post(f"{sandbox.url}/sandbox/faults", json={"latency_ms": 300}, timeout=5)

        def send(index: int) -> int:
            body = make_body(make_event(f"c{index}-a"), make_event(f"c{index}-b"))
            response = httpx.post(sandbox.url + TRACK_PATH, json=body, headers={"Access-Token": TOKEN}, timeout=10)
            return response.json()["code"]

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(send, range(16)))
        elapsed = time.monotonic() - started
        assert codes == [0] * 16
        assert elapsed < 16 * 0.3 / 2, f"requests were served one by one ({elapsed:.2f}s)"
        assert len(httpx.get(f"{sandbox.url}/sandbox/events", timeout=5).json()["events"]) == 32
        assert len(httpx.get(f"{sandbox.url}/sandbox/requests", timeout=5).json()["requests"]) == 16

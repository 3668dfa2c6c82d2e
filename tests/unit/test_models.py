"""The envelope, the event-name table, the event_id scheme and the Events API body."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.domain.events import canonical_event_name, order_event_id, shop_key
from shared.domain.hashing import sha256_hex
from shared.domain.models import Envelope
from shared.tiktok.request import (
    MixedBatchError,
    TrackRequest,
    TrackResponse,
    envelopes_to_request,
    group_for_requests,
)

PIXEL = "CTEST000PIXEL"


def envelope(**overrides) -> Envelope:
    fields = {
        "source": "shopify",
        "pixel_code": PIXEL,
        "event": "Purchase",
        "event_id": "shopify:shop.myshopify.com:order:1:Purchase",
        "event_time": 1_700_000_000,
        "user": {"email": [sha256_hex("a@example.com")], "ttclid": "E.C.P.x", "ip": "203.0.113.1"},
        "properties": {
            "currency": "USD",
            "value": 10.5,
            "contents": [{"content_id": "1", "quantity": 2, "price": 5.25}],
        },
        "page": {"url": "https://shop.example/thanks"},
        "consent": "granted",
    }
    return Envelope.model_validate({**fields, **overrides})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CompletePayment", "Purchase"),
        ("SubmitForm", "Lead"),
        ("GenerateLead", "Lead"),
        ("purchase", "Purchase"),
        ("AddToCart", "AddToCart"),
        ("PlaceAnOrder", "PlaceAnOrder"),
        ("MyCustomEvent", "MyCustomEvent"),
    ],
)
def test_event_names_are_canonical(name, expected):
    assert canonical_event_name(name) == expected


@pytest.mark.parametrize("name", ["", "Has Space", "x" * 80, "<script>"])
def test_bad_event_names_are_refused(name):
    with pytest.raises(ValueError):
        canonical_event_name(name)


def test_order_event_id_is_deterministic_and_exact_for_huge_ids():
    assert (
        order_event_id("shopify", "Example.myshopify.com", 820982911946154508, "CompletePayment")
        == "shopify:example.myshopify.com:order:820982911946154508:Purchase"
    )
    assert order_event_id("woocommerce", "https://www.Shop.example/", "727", "Purchase") == (
        "woocommerce:shop.example:order:727:Purchase"
    )
    assert shop_key("HTTP://www.example.com/shop") == "example.com"


def test_envelope_refuses_raw_pii_in_hashed_fields():
    with pytest.raises(ValidationError) as info:
        envelope(user={"email": ["a@example.com"]})
    assert "user.email" in str(info.value).replace("\n", " ").replace(" ", ".") or "email" in str(info.value)
    with pytest.raises(ValidationError):
        envelope(user={"first_name": "John"})


def test_envelope_refuses_millisecond_and_non_integer_times():
    with pytest.raises(ValidationError):
        envelope(event_time=1_700_000_000_000)
    with pytest.raises(ValidationError):
        envelope(event_time="1700000000")


def test_envelope_pubsub_attributes_hold_no_personal_data():
    attributes = envelope().pubsub_attributes()
    assert attributes == {"pixel_code": PIXEL, "event": "Purchase", "source": "shopify"}


def test_envelope_round_trips_through_json():
    original = envelope()
    assert Envelope.model_validate_json(original.to_json_bytes()) == original


def test_request_body_has_tiktok_shape():
    body = envelopes_to_request([envelope(), envelope(event_id="e2", event="CompletePayment")])
    TrackRequest.model_validate(body)
    assert body["event_source"] == "web" and body["event_source_id"] == PIXEL
    assert "test_event_code" not in body
    first = body["data"][0]
    assert isinstance(first["event_time"], int)
    assert isinstance(first["event_id"], str)
    assert first["user"] == {"email": [sha256_hex("a@example.com")], "ttclid": "E.C.P.x", "ip": "203.0.113.1"}
    assert first["properties"]["contents"] == [{"content_id": "1", "quantity": 2, "price": 5.25}]
    assert first["limited_data_use"] is False
    assert body["data"][1]["event"] == "Purchase"
    json.dumps(body)


def test_test_events_never_share_a_request_with_production_events():
    with pytest.raises(MixedBatchError):
        envelopes_to_request([envelope(), envelope(test_event_code="TEST1")])
    with pytest.raises(MixedBatchError):
        envelopes_to_request([envelope(), envelope(pixel_code="OTHERPIXEL")])
    groups = group_for_requests(
        [envelope(), envelope(test_event_code="TEST1"), envelope(pixel_code="OTHERPIXEL"), envelope(event_id="x")]
    )
    assert sorted(len(g) for g in groups) == [1, 1, 2]
    for group in groups:
        envelopes_to_request(group)


def test_groups_respect_the_1000_event_limit():
    groups = group_for_requests([envelope(event_id=str(i)) for i in range(2500)])
    assert [len(g) for g in groups] == [1000, 1000, 500]


def test_track_response_reads_error_codes():
    response = TrackResponse.model_validate({"code": 40002, "message": "Invalid value for event_id", "request_id": "r"})
    assert response.code == 40002

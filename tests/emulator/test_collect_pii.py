"""No raw personal data in free text reaches Pub/Sub or Firestore through collect (issue 12, finding 8).

Read on the real topic's message bytes and the real Firestore documents: an
email or phone in the page URL, the referrer, a custom property value or a
search query is redacted; a custom property whose name says it holds personal
data (``customer_email``) is not forwarded at all.
"""

from __future__ import annotations

import json
import uuid

import pytest

from shared.domain.models import Properties
from shared.receive.collect.plan import is_personal_name, scrub_properties
from tests.emulator.test_collect_function import (  # noqa: F401 (fixtures)
    collect,
    make_collect,
    request_body,
)

RAW = ("jane.doe", "jane%40", "example.com", "2133734253", "213 373", "373-4253", "Jane Doe", "Elm Street")


def test_personal_data_in_urls_and_free_text_never_reaches_the_topic_or_the_store(collect):  # noqa: F811
    document = request_body(f"cart-{uuid.uuid4().hex}")
    document["context"].update(
        page_url="https://shop.example/thanks/jane.doe@example.com?email=jane.doe%40example.com&ttclid=E.C.P.k"
        "&utm_source=tiktok&utm_term=2133734253&ref=x#jane",
        referrer="https://mail.example/?to=+1%20213%20373%204253",
    )
    event = document["events"][0]
    event["page"] = {"url": "https://shop.example/p?phone=%2B12133734253&utm_campaign=spring",
                     "referrer": "https://user:pw@www.tiktok.com/@jane.doe@example.com"}  # fmt: skip
    event["properties"].update(
        customer_email="jane.doe@example.com",
        firstName="Jane",
        shipping_address="1 Elm Street",
        name="Jane Doe",
        note="call me on +1 213 373 4253 or jane.doe@example.com",
        product_name="Blue shirt",
        sizes=["M", "jane.doe@example.com"],
        query="jane.doe@example.com",
        description="gift for 213-373-4253",
    )
    event["properties"]["contents"][0]["content_name"] = "engraved: jane.doe@example.com"
    response = collect.post(document)
    assert response.status_code == 200, response.get_data(as_text=True)
    [skipped] = response.get_json()["skipped"]
    assert skipped["reason"] == "personal data not forwarded: customer_email, firstName, name, shipping_address"

    [message] = collect.topic.pull_all(1)
    data = message.data.decode()
    for raw in RAW:
        assert raw.lower() not in data.lower(), raw
    envelope = json.loads(data)
    assert envelope["page"] == {"url": "https://shop.example/p?utm_campaign=spring",
                                "referrer": "https://www.tiktok.com/[redacted]"}  # fmt: skip
    properties = envelope["properties"]
    assert properties["product_name"] == "Blue shirt" and properties["sizes"] == ["M", "[redacted]"]
    assert properties["note"] == "call me on [redacted] or [redacted]"
    assert properties["query"] == "[redacted]" and properties["description"] == "gift for [redacted]"
    assert properties["contents"][0] == {"content_id": "SKU1", "content_name": "engraved: [redacted]", "quantity": 1}
    assert not {"customer_email", "firstName", "shipping_address", "name"} & set(properties)

    [context] = collect.contexts().values()
    stored = json.dumps(context, default=str)
    for raw in RAW:
        assert raw.lower() not in stored.lower(), raw
    assert (
        context["page_url"]
        == "https://shop.example/thanks/[redacted]?ttclid=E.C.P.k&utm_source=tiktok&utm_term=%5Bredacted%5D"
    )


@pytest.mark.parametrize(
    "name",
    ["email", "customer_email", "customerEmail", "EMAIL_ADDRESS", "phone", "phone_number", "mobile", "tel",
     "first_name", "firstName", "lastname", "full_name", "name", "customer_name", "billingName", "address",
     "shipping_address_1", "street", "zip", "postcode", "birthdate", "date_of_birth", "ip", "username"],
)  # fmt: skip
def test_names_that_say_personal_data_are_recognized(name):
    assert is_personal_name(name)


@pytest.mark.parametrize(
    "name", ["product_name", "content_name", "variant_name", "collection", "sku", "size", "color", "coupon",
             "shipping_method", "step", "zipper_type", "tip", "page_type", "brand_name"],
)  # fmt: skip
def test_names_of_ordinary_properties_are_kept(name):
    assert not is_personal_name(name)


def test_scrubbing_keeps_ids_and_numbers_that_look_like_phones():
    """A 13-digit GTIN as content_id or order id is an id, not a phone: only free text is scrubbed."""
    properties = Properties.model_validate(
        {"order_id": "4006381333931", "contents": [{"content_id": "4006381333931", "price": 2.5}], "value": 2133734253}
    )
    scrubbed, dropped = scrub_properties(properties)
    assert dropped == [] and scrubbed.model_dump() == properties.model_dump()

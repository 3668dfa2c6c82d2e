"""Collect drops a custom property whose name says it holds personal data, and keeps ordinary ones and their ids."""

from __future__ import annotations

import pytest

from shared.domain.models import Properties
from shared.receive.collect.plan import is_personal_name, scrub_properties


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
    scrubbed, dropped, text = scrub_properties(properties)
    assert dropped == [] == text and scrubbed.model_dump() == properties.model_dump()

"""The registry of sources is what the pipeline reads of each platform: names, join-key kinds, shapes."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.domain.models import Source
from shared.receive.collect.schema import JoinKeysInput
from shared.sources import CUSTOMER, TOKEN, JoinKind, Shape, SourceDefinition, registry


def test_an_envelope_s_source_is_a_registry_name_and_nothing_else() -> None:
    adapter = TypeAdapter(Source)
    for name in registry.SOURCE_NAMES:
        assert adapter.validate_python(name) == name
    for stranger in ("", "Shopify", "shopify ", "bigcommerce"):
        with pytest.raises(ValidationError, match="not a source of the registry"):
            adapter.validate_python(stranger)


def test_the_collect_body_has_one_join_key_field_per_kind_in_order_then_the_signature() -> None:
    assert list(JoinKeysInput.model_fields) == [k.field for k in registry.JOIN_KINDS] + ["customer_id_signature"]


def test_the_customer_id_is_the_framework_s_kind_last_and_shapeless() -> None:
    assert registry.JOIN_KINDS[-1] is CUSTOMER and registry.JOIN_ORDER[-1] is CUSTOMER
    assert CUSTOMER.name not in registry.SHAPES
    assert all(CUSTOMER not in source.join_kinds for source in registry.SOURCES)


def test_a_source_lists_its_kinds_most_specific_first() -> None:
    shopify = registry.source("shopify")
    assert [k.name for k in shopify.join_order()] == ["shopify_checkout_token", "shopify_cart_token"]
    assert [k.name for k in registry.JOIN_ORDER] == [
        "shopify_checkout_token",
        "shopify_cart_token",
        "woocommerce_order_key",
        "woocommerce_session",
        "signed_orders_checkout",
        "customer_id",
    ]


def test_only_order_sources_have_order_event_ids() -> None:
    assert registry.ORDER_SOURCES == ("shopify", "woocommerce", "signed_orders")
    assert not registry.source("collect").order_events


def test_a_kind_strips_a_query_only_when_its_definition_says_so() -> None:
    assert registry.source("shopify").join_kinds[0].normalize("c1-abc?key=secret") == "c1-abc"
    plain = JoinKind("k", "k", Shape(TOKEN, 1, 1, "a k"))
    assert plain.normalize("a?b") == "a?b"


def test_an_unknown_source_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        registry.source("magento")


def test_a_definition_is_frozen() -> None:
    definition = SourceDefinition("x", "X")
    with pytest.raises(AttributeError):
        definition.name = "y"  # type: ignore[misc]
    assert re.match(TOKEN, "abc_-9")

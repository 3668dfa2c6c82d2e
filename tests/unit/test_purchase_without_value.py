"""A Purchase without value or currency is flagged as weak; an order event outside the attribution window is
refused, not flagged.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.models import Envelope
from shared.receive import orders
from tests.unit import test_collect as tc
from tests.unit.test_shopify_mapping import documented_order as shopify_order
from tests.unit.test_shopify_mapping import plan as shopify_plan

NOW = 1_790_000_000


DAY = 86_400


def _envelope(event_time: int, **properties: Any) -> Envelope:
    return Envelope(
        source="woocommerce",
        pixel_code="CPIXEL",
        event="Purchase",
        event_id="woocommerce:s:order:1:Purchase",
        event_time=event_time,
        consent="granted",
        received_at=NOW,
        properties=properties,
    )


def test_an_order_event_outside_the_attribution_window_is_no_longer_a_weak_point_but_a_refusal():
    # Sent once in its life: the window refuses it before an envelope exists (orders.process_order_event).
    assert orders.weak_points(_envelope(NOW - 8 * DAY, value=5.0, currency="USD")) == {}


@pytest.mark.parametrize("properties", [{}, {"value": 5.0}, {"currency": "USD"}])
def test_a_purchase_without_value_or_currency_is_flagged(properties):
    assert list(orders.weak_points(_envelope(NOW, **properties))) == ["no_value"]


def test_a_shopify_paid_order_without_a_total_is_flagged():
    order = shopify_order(total_price=None, total_price_set=None, processed_at=None, created_at=None)
    event = shopify_plan(order).order
    envelope, _ = orders.build_envelope(event, tc.tenants().pixel(tc.PIXEL), {"consent": {"granted": True}},
                                        "opt-in", "US", received_at=NOW)  # fmt: skip
    assert envelope is not None and "no_value" in orders.weak_points(envelope)

"""A collect plan that could not be serialised (a lone surrogate in an event or the click context) is refused
before it joins a group commit.
"""

from __future__ import annotations

import time

from shared.receive.orders import JOIN_SHOPIFY_CART
from tests.emulator.test_collect_function import (  # noqa: F401 (fixtures)
    PIXEL,
    Collect,
    collect,
    make_collect,
    request_body,
)


def test_a_plan_that_would_not_serialise_is_refused_before_it_joins_a_group():
    from shared.config import PixelConfig
    from shared.domain.consent import ConsentDecision
    from shared.domain.models import Envelope, Properties
    from shared.receive.collect import plan as domain

    envelope = Envelope(source="collect", pixel_code=PIXEL, event="AddToCart", event_id="e1",
                        event_time=int(time.time()), consent="granted",
                        properties=Properties.model_validate({"note": "\ud800"}))  # fmt: skip
    plan = domain.Plan(PixelConfig(pixel_code=PIXEL), [], {}, [envelope], [], ConsentDecision(True, False, "granted"))
    assert "events[0] cannot be serialised" in domain.unserialisable(plan)
    clean = domain.Plan(PixelConfig(pixel_code=PIXEL), [(JOIN_SHOPIFY_CART, "c")], {"ttp": "\ud800"}, [], [],
                        ConsentDecision(True, False, "granted"))  # fmt: skip
    assert "click context" in domain.unserialisable(clean)

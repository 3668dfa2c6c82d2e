"""A browser event older than COLLECT_MAX_EVENT_AGE_DAYS is retimed to its receipt and flagged; the event-age
settings stay within the attribution window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from shared.config import (
    CollectSettings,
    ConfigError,
)
from shared.domain.consent import decide
from shared.receive.collect.handler import handle
from shared.receive.collect.plan import Plan, build_plan
from shared.receive.collect.runtime import Runtime
from shared.receive.shopify.settings import ShopifySettings
from shared.receive.woocommerce.settings import WooCommerceSettings
from tests.unit import test_collect as tc

NOW = 1_790_000_000


DAY = 86_400


def _plan(event_time: float, **kwargs: Any) -> Plan:
    document = tc.body(events=[{"event": "ViewContent", "event_id": "v1", "event_time": event_time}])
    parsed = tc.parse(document)
    decision = decide(parsed.consent_snapshot(), "opt-in")
    return build_plan(parsed, tc.tenants().pixel(tc.PIXEL), decision, ip=None, user_agent=tc.CHROME,
                              received=NOW, **kwargs)  # fmt: skip


def test_a_browser_event_within_7_days_keeps_its_time_and_an_older_one_is_retimed_and_flagged():
    kept = _plan(NOW - 6 * DAY)
    assert kept.envelopes[0].event_time == NOW - 6 * DAY and kept.retimed == []
    retimed = _plan(NOW - 8 * DAY)
    assert retimed.envelopes[0].event_time == NOW
    [flag] = retimed.retimed
    assert flag["event_id"] == "v1" and "COLLECT_MAX_EVENT_AGE_DAYS" in flag["reason"]


def test_collect_max_event_age_days_sets_the_window_and_the_answer_says_what_was_retimed():
    settings = CollectSettings.from_env({"COLLECT_MAX_EVENT_AGE_DAYS": "1"})
    assert settings.max_event_age_days == 1
    assert _plan(NOW - 2 * DAY, max_event_age=settings.max_event_age_days * DAY).retimed
    recorder = tc.Recorder()
    narrow = Runtime(tc.tenants(), store_factory=lambda: recorder, publisher_factory=lambda: recorder,
                             max_event_age_days=1)  # fmt: skip
    stale = {"event": "ViewContent", "event_id": "v2", "event_time": (dt.datetime.now().timestamp() - 2 * DAY)}
    reply = handle(tc.post(tc.body(events=[stale])), narrow)
    assert reply.status == 200 and [r["event_id"] for r in reply.body["retimed"]] == ["v2"]
    assert "time of receipt" in reply.outcome.reason


@pytest.mark.parametrize("value", ["0", "29"])
def test_the_event_age_settings_are_bounded_by_the_attribution_window(value):
    for settings, name in (
        (CollectSettings, "COLLECT_MAX_EVENT_AGE_DAYS"),
        (ShopifySettings, "ORDER_MAX_EVENT_AGE_DAYS"),
        (WooCommerceSettings, "ORDER_MAX_EVENT_AGE_DAYS"),
    ):
        with pytest.raises(ConfigError, match=name):
            settings.from_env({name: value})

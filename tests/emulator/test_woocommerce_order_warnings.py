"""WooCommerce orders through the real function on the emulators: a Purchase without value or currency is
published with a warning naming its order; one paid before ORDER_MAX_EVENT_AGE_DAYS is skipped and recorded."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from shared.receive import orders
from tests.emulator.test_woocommerce_webhook import SITE, Webhook, make_app, new_order, woo_env


@pytest.fixture
def woo(monkeypatch, emulators, topic, store, collection_prefix) -> Webhook:
    return Webhook(make_app(monkeypatch, woo_env(emulators, topic, collection_prefix)), store, topic)


def _warnings(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("severity") == "WARNING" and "outcome" not in line]


def test_a_woocommerce_purchase_without_total_and_currency_is_published_with_a_warning_naming_its_order(woo, capsys):
    order = new_order(total=None, currency="")
    woo.grant(order)
    capsys.readouterr()
    assert woo.post(order, "order.created").get_json()["outcome"] == "published"
    woo.exactly_one_published()
    out = capsys.readouterr().out
    [warning] = [w for w in _warnings(out) if "value or currency" in w["message"]]
    assert warning["order_id"] == str(order["id"]) and warning["event_id"].endswith(f":{order['id']}:Purchase")
    for raw in ("john.doe@example.com", "John", "Doe", "969 Market", "94103"):
        assert raw not in out


def test_a_woocommerce_order_paid_long_ago_is_skipped_recorded_and_not_published(woo, store, capsys):
    long_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)).replace(tzinfo=None, microsecond=0)
    order = new_order(date_paid_gmt=long_ago.isoformat(), date_created_gmt=long_ago.isoformat())
    woo.grant(order)
    capsys.readouterr()
    answer = woo.post(order, "order.created")
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "skipped"
    assert "ORDER_MAX_EVENT_AGE_DAYS (7)" in answer.get_json()["reason"]
    woo.nothing_published()
    event_id = f"woocommerce:{SITE}:order:{order['id']}:Purchase"
    record = store.get(orders.ORDER_EVENTS, (orders.OUTCOME_RECORD, event_id))
    assert record is not None and (record["outcome"], record["rule"]) == ("skipped", "outside_window")


def test_order_max_event_age_days_widens_the_window(monkeypatch, emulators, topic, store, collection_prefix, capsys):
    env = woo_env(emulators, topic, collection_prefix, ORDER_MAX_EVENT_AGE_DAYS="14")
    hook = Webhook(make_app(monkeypatch, env), store, topic)
    long_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)).replace(tzinfo=None, microsecond=0)
    order = new_order(date_paid_gmt=long_ago.isoformat())
    hook.grant(order)
    assert hook.post(order, "order.created").get_json()["outcome"] == "published"
    hook.exactly_one_published()
    assert not [w for w in _warnings(capsys.readouterr().out) if "ORDER_MAX_EVENT_AGE_DAYS" in w["message"]]

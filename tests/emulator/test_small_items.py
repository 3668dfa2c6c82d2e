"""Issue 17's smaller items: currency case, event-time windows, Purchases without value, private
addresses, truthful consent logs and one shape for 401 bodies.

Pure where the behaviour is pure; the order webhooks' warnings run through the real WooCommerce
function against the Firestore and Pub/Sub emulators.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import functions_framework
import pytest

from shared.config import (
    CollectSettings,
    ConfigError,
    ShopifySettings,
    Tenants,
    WooCommerceSettings,
    WooCommerceSiteConfig,
)
from shared.domain.consent import ConsentDecision, ConsentSnapshot, decide
from shared.domain.identity import RawIdentity, build_user, valid_ip
from shared.domain.models import Envelope, UserData
from shared.receive import orders, woocommerce
from shared.receive.collect.handler import Runtime, handle, log_reply
from shared.receive.collect.plan import Plan, build_plan
from shared.receive.collect.request import HttpRequest
from shared.receive.shopify.delivery import Delivery as ShopifyDelivery
from shared.receive.shopify.execute import Runtime as ShopifyRuntime
from shared.receive.shopify.handler import handle as handle_shopify
from shared.receive.woocommerce import mapping as woo_mapping
from tests.emulator.test_shopify_mapping import documented_order as shopify_order
from tests.emulator.test_shopify_mapping import plan as shopify_plan
from tests.emulator.test_shopify_mapping import shop_config
from tests.emulator.test_woocommerce import documented_order as woo_order
from tests.emulator.test_woocommerce_webhook import SITE, SITE_URL, Webhook, make_app, new_order, woo_env
from tests.helpers import ROOT, shopify_signature
from tests.unit import test_collect as tc

NOW = 1_790_000_000
DAY = 86_400


# --- (a) a lowercase currency ------------------------------------------------------------------------


def test_a_lowercase_currency_in_collect_is_normalised_and_the_request_keeps_its_click_context():
    recorder = tc.Recorder()
    event = {"event": "AddToCart", "event_id": "evt-usd", "properties": {"currency": " usd ", "value": 9.5}}
    reply = handle(tc.post(tc.body(events=[event])), tc.runtime(recorder))
    assert (reply.status, reply.outcome.kind) == (200, "accepted")
    assert recorder.published[0].properties.currency == "USD"
    assert recorder.contexts and recorder.contexts[0][2]["ttclid"] == "E.C.P.click"


def test_a_currency_that_is_no_code_in_any_case_is_still_refused_naming_the_field():
    event = {"event": "AddToCart", "event_id": "evt-x", "properties": {"currency": "dollars"}}
    reply = handle(tc.post(tc.body(events=[event])), tc.runtime())
    assert reply.status == 400 and "events[0].properties.currency" in reply.body["reason"]


def test_the_order_webhooks_already_upper_case_a_lowercase_currency():
    order = shopify_order(currency="usd", total_price="10.00", total_price_set=None)
    assert shopify_plan(order, shop=shop_config(currency="shop")).order.properties["currency"] == "USD"
    site = WooCommerceSiteConfig(url=SITE_URL, pixel_code="CPIXEL")
    assert woo_mapping.map_order(woo_order(currency="eur"), site, NOW).properties["currency"] == "EUR"


# --- (d) private, loopback, link-local and reserved addresses -------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["192.168.0.1", "10.1.2.3", "172.16.5.4", "100.64.0.1", "127.0.0.1", "::1", "169.254.1.1", "fe80::1",
     "fd12:3456::1", "240.0.0.1", "224.0.0.1", "255.255.255.255", "::ffff:192.168.1.1", "::ffff:127.0.0.1"],
)  # fmt: skip
def test_an_address_no_shopper_is_reached_at_is_dropped(address):
    assert valid_ip(address) is None
    assert build_user(RawIdentity(ip=address)).ip is None


@pytest.mark.parametrize(
    ("address", "kept"),
    [("8.8.8.8", "8.8.8.8"), ("2a00:1450:4001::1", "2a00:1450:4001::1"), ("::ffff:8.8.4.4", "8.8.4.4"),
     ("203.0.113.24", "203.0.113.24"), ("2001:db8::1", "2001:db8::1")],
)  # fmt: skip
def test_public_addresses_are_kept(address, kept):
    assert valid_ip(address) == kept


def test_collect_does_not_forward_a_private_client_address():
    recorder = tc.Recorder()
    request = tc.post(tc.body())
    private = HttpRequest(request.method, request.headers, request.read, "192.168.1.20")
    assert handle(private, tc.runtime(recorder)).status == 200
    assert recorder.contexts[0][2]["ip"] is None and recorder.published[0].user.ip is None


def test_a_private_address_in_an_older_click_context_or_envelope_is_not_sent():
    merged = orders._merge_context(UserData(), {"ip": "10.0.0.8", "user_agent": "UA"})
    assert (merged.ip, merged.user_agent) == (None, "UA")
    # What the sender decodes from Pub/Sub: an envelope published before the receivers dropped them.
    document = {
        "source": "collect",
        "pixel_code": "CPIXEL",
        "event": "ViewContent",
        "event_id": "e1",
        "event_time": NOW,
        "consent": "granted",
        "user": {"ip": "192.168.0.1", "ttclid": "E.C.P.x"},
    }
    envelope = Envelope.model_validate_json(json.dumps(document))
    assert envelope.user.ip is None and envelope.user.ttclid == "E.C.P.x"


# --- (b) event times outside the window -------------------------------------------------------------


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


# --- (c) a Purchase without value or currency -----------------------------------------------------------


@pytest.mark.parametrize("properties", [{}, {"value": 5.0}, {"currency": "USD"}])
def test_a_purchase_without_value_or_currency_is_flagged(properties):
    assert list(orders.weak_points(_envelope(NOW, **properties))) == ["no_value"]


def test_a_shopify_paid_order_without_a_total_is_flagged():
    order = shopify_order(total_price=None, total_price_set=None, processed_at=None, created_at=None)
    event = shopify_plan(order).order
    envelope, _ = orders.build_envelope(event, tc.tenants().pixel(tc.PIXEL), {"consent": {"granted": True}},
                                        "opt-in", "US", received_at=NOW)  # fmt: skip
    assert envelope is not None and "no_value" in orders.weak_points(envelope)


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


# --- (e) consent decisions logged as decided -----------------------------------------------------------


def test_a_sale_of_data_opt_out_is_answered_and_logged_with_limited_data_use(capsys):
    recorder = tc.Recorder()
    request = tc.post(tc.body(consent={"marketingAllowed": True, "saleOfDataAllowed": False}))
    reply = handle(request, tc.runtime(recorder))
    assert reply.status == 200 and recorder.published[0].limited_data_use is True
    assert reply.body["consent"] == "granted" and reply.body["limited_data_use"] is True
    capsys.readouterr()
    log_reply(reply, request)
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (line["consent"], line["limited_data_use"]) == ("granted", True)
    assert "limited_data_use" in line["message"]


def test_a_plain_grant_is_logged_without_limited_data_use(capsys):
    request = tc.post(tc.body())
    reply = handle(request, tc.runtime())
    log_reply(reply, request)
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (line["consent"], line["limited_data_use"]) == ("granted", False)
    assert "limited" not in line["message"]


def test_a_withdrawal_says_the_denial_alone_replaced_the_stored_context():
    recorder = tc.Recorder()
    reply = handle(tc.post(tc.body(consent={"marketingAllowed": False})), tc.runtime(recorder))
    assert reply.status == 204 and len(recorder.replaced) == 1 and not recorder.contexts
    [(_pixel, keys, context, _ttl)] = recorder.replaced
    assert keys and set(context) == {"consent"} and context["consent"]["marketing_allowed"] is False
    assert "denial alone" in reply.outcome.reason and "replacing" in reply.outcome.reason
    assert "nothing stored" not in reply.outcome.reason


def test_a_withholding_without_keys_to_delete_says_nothing_was_stored():
    reply = handle(tc.post(tc.body(consent=None, context={})), tc.runtime())
    assert reply.status == 204 and reply.outcome.reason == "consent no_consent: nothing stored or sent"


def test_the_decision_describes_itself_as_decided():
    assert ConsentDecision(True, True, "policy_opt_out").describe().startswith("policy_opt_out, with limited_data_use")
    assert decide(ConsentSnapshot(granted=True), "opt-in").describe() == "granted"


# --- (f) one shape for 401 bodies ----------------------------------------------------------------------


def _shape(body: dict[str, Any]) -> tuple[str, bool]:
    return body.get("error", ""), set(body) == {"error", "reason"} and bool(body["reason"])


def test_woocommerce_and_shopify_answer_401_with_the_same_shape():
    site = WooCommerceSiteConfig(url=SITE_URL, pixel_code="CPIXEL", secrets=["s3cret"])
    tenants = Tenants(pixels={"CPIXEL": {"pixel_code": "CPIXEL"}}, woocommerce_sites={SITE: site})
    woo_runtime = woocommerce.Runtime(tenants)
    body = b'{"id": 1}'
    headers = {"X-WC-Webhook-Source": SITE_URL, "X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Signature": "x"}
    woo_reply = woocommerce.handle(headers, body, lambda: woo_runtime)
    unknown = woocommerce.handle({**headers, "X-WC-Webhook-Source": "https://other.example"}, body, lambda: woo_runtime)

    shop = shop_config(secrets=["s3cret"])
    shop_tenants = Tenants(pixels={"CPIXEL": {"pixel_code": "CPIXEL"}}, shopify_shops={shop.domain: shop})
    delivery = ShopifyDelivery.from_headers({"X-Shopify-Shop-Domain": shop.domain, "X-Shopify-Topic": "orders/paid",
                                             "X-Shopify-Hmac-Sha256": shopify_signature(body, "wrong")})  # fmt: skip
    shopify_reply = handle_shopify(delivery, body, ShopifyRuntime(shop_tenants))
    assert [r.status for r in (woo_reply, unknown, shopify_reply)] == [401] * 3
    assert {_shape(r.body) for r in (woo_reply, unknown, shopify_reply)} == {("unauthorized", True)}


def test_the_shopify_pubsub_entry_points_refusals_have_the_error_and_reason_shape(monkeypatch):
    for name, value in {"TIKTOK_PIXEL_CODE": "CPIXEL", "SHOPIFY_SHOP_DOMAIN": "a.myshopify.com",
                        "SHOPIFY_WEBHOOK_SECRET": "s"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    source = str(ROOT / "functions" / "shopify_webhook" / "main.py")
    client = functions_framework.create_app(target="shopify_pubsub", source=source).test_client()
    response = client.post("/", data=b"[1]", content_type="application/json")
    assert 400 <= response.status_code < 500
    assert set(response.get_json()) == {"error", "reason"}

"""The local shop's platform rules, without a network: cost bucket, retry schedule, disable rules, listing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from pathlib import Path

import pytest

from sandbox.shop import config, delivery, orders, woo_api
from sandbox.shop.throttle import CostBucket

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_charges_the_requested_cost_refunds_the_unused_part_and_refills_at_its_rate():
    clock = Clock()
    bucket = CostBucket(maximum=100, restore_rate=10, clock=clock)
    assert bucket.try_charge(82)
    bucket.refund(82 - 60)  # actual cost 60
    assert bucket.status() == {"maximumAvailable": 100.0, "currentlyAvailable": 40.0, "restoreRate": 10.0}
    assert not bucket.try_charge(52) and bucket.status()["currentlyAvailable"] == 40.0  # throttled: nothing taken
    assert bucket.seconds_until(52) == pytest.approx(1.2)
    clock.now += 1.2
    assert bucket.try_charge(52)
    clock.now += 1000
    assert bucket.status()["currentlyAvailable"] == 100.0  # never above the maximum
    assert bucket.seconds_until(101) == float("inf")


def test_shopify_retries_eight_times_over_four_hours_scaled_by_the_time_factor():
    real = delivery.retry_delays(8, 1.0)
    assert len(real) == 8 and sum(real) == 4 * 3600 and real == sorted(real)
    assert sum(delivery.retry_delays(8, 0.0001)) == pytest.approx(1.44)
    assert delivery.shopify_gives_up(8, 8) is False and delivery.shopify_gives_up(9, 8) is True


def test_an_app_subscription_is_removed_when_a_webhook_is_given_up_after_eight_consecutive_failures():
    subscription = delivery.Subscription(1, "orders/paid", "http://x/", "2026-10", "t")
    for _ in range(8):
        assert subscription.after_attempt(False, gave_up=False, remove_after=8, now="t") is False
    assert subscription.consecutive_failures == 8
    assert subscription.after_attempt(False, gave_up=True, remove_after=8, now="t9") is True
    assert subscription.removed_at == "t9"
    admin = delivery.Subscription(2, "orders/paid", "http://x/", "2026-10", "t", created_by="admin")
    assert not any(admin.after_attempt(False, gave_up=True, remove_after=1, now="t") for _ in range(20))


def test_a_success_resets_the_consecutive_failures_of_a_subscription():
    subscription = delivery.Subscription(1, "orders/paid", "http://x/", "2026-10", "t")
    for _ in range(7):
        subscription.after_attempt(False, gave_up=False, remove_after=8, now="t")
    subscription.after_attempt(True, gave_up=False, remove_after=8, now="t")
    assert subscription.consecutive_failures == 0


def test_woocommerce_disables_when_a_failure_finds_more_than_max_failures_already_counted():
    webhook = delivery.WooWebhook(1, "n", "order.updated", "http://x/", "s")
    results = [webhook.after_delivery(False, max_failures=5) for _ in range(7)]
    assert results == [False] * 6 + [True]  # WC_Webhook::failed_delivery: `if ($failures > 5)` before ++
    assert webhook.status == "disabled" and webhook.failure_count == 6
    webhook.status = "active"  # PUT status=active: the count stays, so the next failure disables again
    assert webhook.after_delivery(False, max_failures=5) is True
    webhook.status = "active"
    assert webhook.after_delivery(True, max_failures=5) is False and webhook.failure_count == 0


@pytest.mark.parametrize(("status", "shopify", "woocommerce"),
                         [(200, True, True), (204, True, True), (301, False, True), (302, False, True),
                          (303, False, False), (500, False, False), (None, False, False)])  # fmt: skip
def test_what_each_platform_counts_as_delivered(status, shopify, woocommerce):
    assert delivery.shopify_succeeded(status) is shopify
    assert delivery.woocommerce_succeeded(status) is woocommerce


def test_signatures_are_base64_hmac_sha256_of_the_raw_body_and_woocommerce_decodes_its_secret_first():
    body = b'{"id": 1}'
    shopify = delivery.shopify_headers(body, "s3cret", "orders/paid", "shop.myshopify.com", "2026-10", "w", "e", "t")
    expected = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert shopify["X-Shopify-Hmac-Sha256"] == expected and shopify["X-Shopify-Webhook-Id"] == "w"
    woo = delivery.woocommerce_headers(body, "a&amp;b", "order.updated", "https://woo.local.test", 3, "d")
    assert woo["X-WC-Webhook-Signature"] == base64.b64encode(hmac.new(b"a&b", body, hashlib.sha256).digest()).decode()
    assert woo["X-WC-Webhook-Source"] == "https://woo.local.test/" and woo["X-WC-Webhook-Resource"] == "order"
    assert woo["X-WC-Webhook-Event"] == "updated" and woo["X-WC-Webhook-ID"] == "3"


def test_woocommerce_listing_refuses_a_page_size_over_100_and_bad_dates_in_wordpress_shape():
    with pytest.raises(woo_api.InvalidParams) as caught:
        woo_api.parse_order_query({"per_page": "101", "after": "yesterday"})
    body = caught.value.body()
    assert body["code"] == "rest_invalid_param" and set(body["data"]["params"]) == {"per_page", "after"}


def test_woocommerce_date_bounds_are_strict_and_pages_carry_their_totals():
    made = [orders.woocommerce_order(100 + i, {"created_at": f"2026-11-20T10:0{i}:00Z"}, "https://w", NOW)
            for i in range(5)]  # fmt: skip
    query = woo_api.parse_order_query({"after": "2026-11-20T10:01:00", "before": "2026-11-20T10:04:00",
                                       "orderby": "date", "order": "asc", "per_page": "2"})  # fmt: skip
    page = woo_api.list_orders(made, query)
    assert [o["id"] for o in page.orders] == [102, 103] and (page.total, page.total_pages) == (2, 1)
    link = woo_api.link_header("http://h/wp-json/wc/v3/orders", {"per_page": "1", "page": "2"}, 2, 3)
    assert link == ('<http://h/wp-json/wc/v3/orders?per_page=1&page=1>; rel="prev", '
                    '<http://h/wp-json/wc/v3/orders?per_page=1&page=3>; rel="next"')  # fmt: skip


def test_order_changes_fire_the_platform_topics_and_refunds_carry_a_refund_body():
    placed = orders.shopify_order(1, 1, {"paid": False, "total": "20.00"}, NOW)
    paid, topics, _ = orders.shopify_change(placed, "pay", {}, NOW, 9)
    assert paid["financial_status"] == "paid" and topics == ("orders/paid", "orders/updated")
    refunded, topics, refund = orders.shopify_change(paid, "refund", {"amount": "5"}, NOW, 9)
    assert refunded["financial_status"] == "partially_refunded" and topics[0] == "refunds/create"
    assert refund is not None and refund["order_id"] == 1 and refund["transactions"][0]["amount"] == "5.00"
    with pytest.raises(orders.OrderError, match="already paid"):
        orders.shopify_change(paid, "pay", {}, NOW, 9)
    woo = orders.woocommerce_order(5, {"paid": False, "session": "a" * 32}, "https://w", NOW)
    assert woo["status"] == "pending" and woo["meta_data"][0] == {"id": 50, "key": "_tt_session", "value": "a" * 32}
    woo_paid, woo_topics = orders.woocommerce_change(woo, "pay", {}, NOW, 9)
    assert woo_paid["status"] == "processing" and woo_paid["date_paid_gmt"] and woo_topics == ("order.updated",)


def test_seeding_reads_the_shared_fixtures_keeps_exact_ids_and_tolerates_a_missing_folder(tmp_path: Path):
    assert orders.seed_orders(tmp_path / "absent") == {"shopify": [], "woocommerce": []}
    seeded = orders.seed_orders(config.DEFAULT_FIXTURES)
    if not config.DEFAULT_FIXTURES.is_dir():
        pytest.skip("no fixtures folder")
    ids = {o["id"] for o in seeded["shopify"]}
    assert 820982911946154508 in ids  # the documented order's exact id, from its admin_graphql_api_id
    assert [o["id"] for o in seeded["woocommerce"]] == [727]


def test_settings_come_from_the_local_stacks_variables_and_knobs_are_checked():
    settings = config.from_environ({"SHOPIFY_WEBHOOK_SECRET": "new,old", "WOOCOMMERCE_WEBHOOK_SECRET":
                                    '{"woo.local.test": "site-secret"}', "SHOP_FIXTURES": ""})  # fmt: skip
    assert settings.shopify_webhook_secret == "new" and settings.shopify_client_secret == "new"
    assert settings.woocommerce_webhook_secret == "site-secret" and settings.fixtures is None
    assert config.update_knobs(config.Knobs(), {"time_factor": 0.001}).time_factor == 0.001
    with pytest.raises(ValueError, match="unknown settings"):
        config.update_knobs(config.Knobs(), {"timefactor": 1})
    with pytest.raises(ValueError, match="integer"):
        config.update_knobs(config.Knobs(), {"shopify_retries": 2.5})

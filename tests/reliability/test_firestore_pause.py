"""Firestore stops answering for longer than a webhook's budget: no paid order is lost or sent twice.

The Shopify delivery id used to be claimed for good before
any work; when that write outlived the 4 s budget the webhook answered 503, the
write landed anyway, and Shopify's retry was answered "duplicate: delivery
already received", so the Purchase was never published.

The Firestore emulator's whole process group is SIGSTOPped (a stalled backend
as the client sees it: connections open, no answers) for 8 s while signed
orders arrive: Shopify orders, a quarter of them as orders/create then
orders/paid, a fifth delivered twice at once; and WooCommerce orders. Shopify
is played as Shopify behaves: every non-2xx, timeout (5 s) or cut connection
is retried with the same ``X-Shopify-Webhook-Id`` until a 2xx. WooCommerce
never retries: its 2xx may cover an order *parked* for replay (202), accepted
and replayable but not yet sent; the scenario replays parked orders with the
operator's command (``python -m functions.woocommerce_webhook.replay``) before
counting, and reports how many there were. Counting is at the TikTok sandbox.
"""

from __future__ import annotations

import pytest

from tests.reliability import scenarios

pytestmark = [pytest.mark.reliability, pytest.mark.stack]


def test_firestore_paused_past_the_budget_loses_and_duplicates_no_paid_order(rstack, http):
    # 8 s: past Shopify's 4 s and WooCommerce's 5 s Firestore budgets.
    result = scenarios.firestore_pause(rstack, http, shopify_orders=40, woocommerce_orders=20, traffic_seconds=12,
                                       pause_at=2, pause_seconds=8)  # fmt: skip
    summary = {k: v for k, v in result.items() if k != "tally"}
    print("firestore paused 8 s:", summary)
    assert result["shopify_never_2xx"] == {}, f"Shopify deliveries never answered 2xx: {summary}"
    # WooCommerce never retries: anything but a 2xx loses the order.
    assert result["woocommerce_not_2xx"] == [], summary
    assert set(result["woocommerce_answers"]) <= {"200 published", "202 parked"}, summary
    replay = result["woocommerce_replay"]
    if replay["parked"]:
        assert (replay["log_lines"], replay["returncode"]) == (replay["parked"], 0), summary
    assert (result["tally"].lost, result["tally"].duplicated) == ([], {}), summary

"""The time budgets of shared/budgets.py against each other and against Terraform's function timeouts.

Each test names one dependency: change a number and the test that fails says
which other number it now contradicts, and what an event would suffer.
"""

from __future__ import annotations

import datetime as dt

from shared import budgets
from shared.config import SenderSettings
from shared.receive.shopify.settings import ShopifySettings
from tests.infra.hcl import Terraform


def _timeout(tf: Terraform, function: str) -> float:
    return float(tf.locals["functions"][function]["sizing"]["timeout_seconds"])


def test_a_shopify_delivery_answers_before_shopify_gives_up() -> None:
    # Past 5 s Shopify counts a failure and retries; the margin is our own CPU after the last call.
    assert budgets.SHOPIFY_IO_SECONDS + 0.5 <= budgets.SHOPIFY_ANSWER_SECONDS


def test_a_woocommerce_delivery_answers_before_woocommerce_or_the_platform_gives_up(tf: Terraform) -> None:
    # WooCommerce never retries: an answer cut short is an order lost, not parked.
    worst = budgets.WOOCOMMERCE_FIRESTORE_SECONDS + budgets.WOOCOMMERCE_PUBLISH_SECONDS
    assert worst < budgets.WOOCOMMERCE_ANSWER_SECONDS
    assert worst < _timeout(tf, "woocommerce_webhook")


def test_a_collect_request_answers_before_the_function_timeout(tf: Terraform) -> None:
    assert _timeout(tf, "collect") > budgets.COLLECT_STORE_SECONDS + budgets.COLLECT_PUBLISH_SECONDS


def test_a_shopify_pubsub_push_answers_before_its_ack_deadline(tf: Terraform) -> None:
    # The Shopify delivery subscription's ack deadline is the function's timeout (terraform/pubsub.tf), whose
    # sizing is shopify_webhook's (terraform/functions.tf, its entry point in local.functions).
    assert _timeout(tf, "shopify_webhook") > budgets.SHOPIFY_IO_SECONDS


def test_a_claim_outlives_the_attempt_that_holds_it() -> None:
    # Held from its write through every request of a bisection to the finalizing write: a shorter lease
    # lets a redelivery take it over and send the same event while the first attempt still sends it.
    held = budgets.BISECTION_REQUESTS * budgets.TIKTOK_TIMEOUT_SECONDS + budgets.SENDER_FIRESTORE_SECONDS
    assert held < budgets.CLAIM_LEASE_SECONDS


def test_a_push_gets_its_answer_before_the_sender_times_out(tf: Terraform) -> None:
    # The sender's timeout is also its push subscription's ack deadline: a push cut without an answer is
    # redelivered while its batch may still be sending.
    wait = budgets.sender_result_wait(budgets.TIKTOK_TIMEOUT_SECONDS)
    assert wait < _timeout(tf, "sender")
    deadline = str(tf.resource("google_pubsub_subscription", "module.events_push.push")["ack_deadline_seconds"])
    assert deadline.strip("${}") == "local.function_runtime.sender.timeout_seconds"


def test_an_order_events_claim_outlives_every_replay_and_tiktoks_own_dedup() -> None:
    # The sender's claim is an order event's only one: a replayed body as old as the webhook accepts must
    # still find it, a day later included; TikTok's 48 h alone would let it through.
    assert budgets.MAX_ORDER_AGE + dt.timedelta(days=1) <= budgets.CLAIM_TTL
    assert budgets.CLAIM_TTL > budgets.TIKTOK_DEDUP
    assert budgets.ORDER_RECORD_TTL >= budgets.MAX_ORDER_AGE


def test_an_instance_forgets_sent_browser_events_well_inside_tiktoks_dedup() -> None:
    # A redelivery that reaches another instance is merged by TikTok only within its window.
    assert dt.timedelta(seconds=budgets.RECENT_SENT_SECONDS) < budgets.TIKTOK_DEDUP


def test_the_settings_defaults_are_the_budgets() -> None:
    sender = SenderSettings.model_fields
    assert sender["timeout_seconds"].default == budgets.TIKTOK_TIMEOUT_SECONDS
    assert sender["claim_lease_seconds"].default == budgets.CLAIM_LEASE_SECONDS
    assert sender["claim_ttl_hours"].default * 3600 == budgets.CLAIM_TTL.total_seconds()
    assert (sender["batch_wait_ms"].default, sender["batch_idle_ms"].default, sender["batch_hold_ms"].default) == (
        budgets.SENDER_BATCH_WAIT_MS, budgets.SENDER_BATCH_IDLE_MS, budgets.SENDER_BATCH_HOLD_MS)  # fmt: skip
    assert ShopifySettings.model_fields["max_order_age_days"].default <= budgets.MAX_ORDER_AGE.days

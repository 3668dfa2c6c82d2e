"""Functions killed mid-traffic lose and duplicate no paid order.

A Cloud Run instance can die at any instruction (out of memory, a host
failure). Here the Shopify function's gunicorn worker is SIGKILLed four times
while bursts of signed orders are in flight, its master once (the stack must then start the
function again, as Cloud Run would), and the sender's worker three times
while TikTok requests are in flight. Shopify is played as Shopify behaves:
every non-2xx, timeout or cut connection is retried with the same webhook id
until a 2xx (for up to 75 s: past the 30 s lease of an orphaned order claim).
Counting is at the TikTok sandbox, per event_id.
"""

from __future__ import annotations

import pytest

from tests.reliability import scenarios

pytestmark = [pytest.mark.reliability, pytest.mark.stack]


def _printable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "tally"}


def test_killing_the_shopify_worker_four_times_loses_and_duplicates_no_order(rstack, http):
    # Rounds of 12 concurrent orders, the worker killed 20 ms to 300 ms into each: deliveries die at every step.
    result = scenarios.shopify_worker_kills(rstack, http, orders_per_round=12, kill_after=[0.02, 0.08, 0.15, 0.3])
    summary = _printable(result)
    print("shopify worker killed x4:", summary)
    assert all(result["kills"]), f"a kill found no worker: {summary}"
    assert result["attempts_cut_or_refused"] > 0, f"no kill cut a delivery: the test proved nothing: {summary}"
    assert result["shopify_never_2xx"] == {}, f"deliveries never answered 2xx: {summary}"
    assert (result["tally"].lost, result["tally"].duplicated) == ([], {}), summary


def test_killing_the_shopify_master_the_stack_restarts_it_and_no_order_is_lost(rstack, http):
    result = scenarios.shopify_master_kill(rstack, http, orders=20, seconds=8, kill_at=2)
    summary = _printable(result)
    print("shopify master killed:", summary)
    assert result["kill_errors"] == [], summary
    assert result["restart"]["up_by_itself"], (
        f"the Shopify function was not started again within {scenarios.RESTART_SECONDS}s of its master's death "
        f"(make run should restart a crashed function, like Cloud Run): {summary}"
    )
    assert result["shopify_never_2xx"] == {}, f"deliveries never answered 2xx: {summary}"
    assert (result["tally"].lost, result["tally"].duplicated) == ([], {}), summary


def test_killing_the_sender_mid_batch_loses_no_event_and_resends_only_what_was_in_flight(rstack):
    # TikTok requests take 300 ms, so each kill lands inside one.
    result = scenarios.sender_kills(rstack, events=150, per_second=25, kill_at=[1.5, 3.5, 5.5], latency_ms=300)
    summary = _printable(result)
    print("sender killed x3 mid-batch:", summary)
    assert result["kill_errors"] == [] and result["kills"] == 3, f"a kill found no sender worker: {summary}"
    assert result["tally"].lost == [], summary
    # A copy is allowed only of an event TikTok had accepted in the very request a kill cut short (its resend
    # after the claim lease is deduplicated by TikTok on event_id); any other copy is a duplicate.
    assert result["unexplained_duplicates"] == {}, summary

"""An order is sent once in its life: the order window, the claim that outlives it, and the sender that enforces it.

Pure: the window's decision (shared.domain.events.order_window_refusal), the claim
TTL it implies (shared.budgets.order_claim_ttl, CLAIM_TTL_HOURS' refusal) and the
sender's processor against the in-memory store with a scripted TikTok.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest

from shared import budgets
from shared.config import ConfigError, SenderSettings, order_claim_ttl_hours
from shared.domain.events import ATTRIBUTION_WINDOW, ORDER_CLOCK_AHEAD_SECONDS, OUTSIDE_WINDOW, order_window_refusal
from shared.infra.store import DEAD_EVENTS, EVENT_CLAIMS, ORDER_EVENTS, OUTCOME_RECORD, doc_id
from shared.outcome import Kind
from tests.unit.memory import MemoryStore
from tests.unit.test_claims import ScriptedTikTok, make_processor
from tests.unit.test_delivery import make_envelope

NOW = 1_800_000_000
DAY = 86_400
WEEK = ATTRIBUTION_WINDOW


# --- the decision -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_time", "sent"),
    [
        (NOW, True),
        (NOW - 7 * DAY, True),  # exactly the window: still inside
        (NOW - 7 * DAY - 1, False),  # one second past it
        (NOW - 10 * DAY, False),
        (NOW - 90 * DAY, False),
        (NOW + ORDER_CLOCK_AHEAD_SECONDS, True),  # as far ahead as a platform's clock may be
        (NOW + ORDER_CLOCK_AHEAD_SECONDS + 1, False),
    ],
)
def test_an_order_event_is_sendable_only_inside_its_window_both_ends_included(event_time: int, sent: bool) -> None:
    assert (order_window_refusal(event_time, NOW, WEEK) is None) is sent


def test_the_refusal_says_how_old_and_names_the_variable() -> None:
    reason = order_window_refusal(NOW - 30 * DAY, NOW, WEEK)
    assert reason is not None and "30.0 days old" in reason and "ORDER_MAX_EVENT_AGE_DAYS (7)" in reason
    ahead = order_window_refusal(NOW + 2 * DAY, NOW, WEEK)
    assert ahead is not None and "48.0 hours ahead" in ahead


def test_the_window_follows_max_age() -> None:
    assert order_window_refusal(NOW - 10 * DAY, NOW, dt.timedelta(days=14)) is None
    assert order_window_refusal(NOW - 2 * DAY, NOW, dt.timedelta(days=1)) is not None


# --- the claim outlives the window -------------------------------------------------------------------


@pytest.mark.parametrize("max_age_days", [1, 7, 14, 28])
def test_no_copy_that_passes_the_window_comes_after_the_first_claim_expired(max_age_days: int) -> None:
    """The proof of budgets.order_claim_ttl, checked on the edges and at random.

    The first copy is claimed at s (it passed the window at s, so event_time <= s + clock allowance).
    A later copy at r is sent only if it passes the window at r; it must then find the claim: r < s + ttl.
    """
    max_age = dt.timedelta(days=max_age_days)
    ttl = budgets.order_claim_ttl(max_age).total_seconds()
    rng = random.Random(max_age_days)
    for _ in range(2000):
        event_time = NOW
        s = event_time - ORDER_CLOCK_AHEAD_SECONDS + rng.randrange(0, int(max_age.total_seconds()) + 1)
        s = rng.choice([s, event_time - ORDER_CLOCK_AHEAD_SECONDS, event_time + int(max_age.total_seconds())])
        assert order_window_refusal(event_time, s, max_age) is None  # the first copy was sendable
        for r in (s + int(ttl) - 1, s + int(ttl), s + int(ttl) + rng.randrange(0, 400 * DAY)):
            if r >= s + ttl:  # its claim expired by then: the window must refuse it
                assert order_window_refusal(event_time, r, max_age) is not None, (s, r)
    # And the margin is what it claims to be: without it, the longest-lived copy lands on the expiry itself.
    assert ttl - budgets.CLAIM_MARGIN.total_seconds() == max_age.total_seconds() + ORDER_CLOCK_AHEAD_SECONDS


def test_the_default_claim_ttl_outlives_the_default_window() -> None:
    assert budgets.CLAIM_TTL == budgets.order_claim_ttl(ATTRIBUTION_WINDOW) == dt.timedelta(days=9)
    assert SenderSettings.from_env({}).claim_ttl_hours == order_claim_ttl_hours(7) == 216


def test_an_unset_claim_ttl_follows_a_wider_order_window() -> None:
    settings = SenderSettings.from_env({"ORDER_MAX_EVENT_AGE_DAYS": "28"})
    assert (settings.max_event_age_days, settings.claim_ttl_hours) == (28, (28 + 2) * 24)


@pytest.mark.parametrize(
    ("env", "needed"),
    [
        ({"CLAIM_TTL_HOURS": "200"}, 216),
        ({"CLAIM_TTL_HOURS": "300", "ORDER_MAX_EVENT_AGE_DAYS": "14"}, 384),
        ({"CLAIM_TTL_HOURS": "383", "ORDER_MAX_EVENT_AGE_DAYS": "14"}, 384),
    ],
)
def test_a_claim_ttl_shorter_than_the_window_is_refused_in_one_line_naming_both_and_the_fix(
    env: dict[str, str], needed: int
) -> None:
    with pytest.raises(ConfigError) as refused:
        SenderSettings.from_env(env)
    message = str(refused.value)
    assert "\n" not in message and "CLAIM_TTL_HOURS" in message and "ORDER_MAX_EVENT_AGE_DAYS" in message
    assert f"= {needed} h" in message and f"Fix: set CLAIM_TTL_HOURS to at least {needed}" in message


def test_a_claim_ttl_as_long_as_the_window_needs_is_accepted() -> None:
    settings = SenderSettings.from_env({"CLAIM_TTL_HOURS": "384", "ORDER_MAX_EVENT_AGE_DAYS": "14"})
    assert settings.claim_ttl_hours == 384
    assert SenderSettings.from_env({"CLAIM_TTL_HOURS": "1000"}).claim_ttl_hours == 1000


# --- the sender enforces it, before any claim ---------------------------------------------------------


def _processor(store: MemoryStore, tiktok: ScriptedTikTok, now: int = NOW):
    return make_processor(store, tiktok, now=lambda: now + 0.5)


@pytest.mark.parametrize("source", ["shopify", "woocommerce", "redrive", "manual"])
def test_the_sender_skips_an_old_order_event_before_claiming_it_and_records_the_outcome(source: str) -> None:
    store, tiktok = MemoryStore(), ScriptedTikTok()
    event_id = "woocommerce:woo.local.test:order:727:Purchase"
    envelope = make_envelope(event_id, source=source, event_time=NOW - 30 * DAY)
    (outcome,) = _processor(store, tiktok).process([(envelope, "m1")])
    assert outcome.kind == Kind.SKIPPED and outcome.details["rule"] == OUTSIDE_WINDOW and not outcome.retry
    assert "30.0 days old" in outcome.reason
    assert tiktok.requests == []
    assert (EVENT_CLAIMS, doc_id(*envelope.claim_key())) not in store.docs  # no claim taken
    record = store.docs[(ORDER_EVENTS, doc_id(OUTCOME_RECORD, event_id))]
    assert (record["event_id"], record["outcome"], record["rule"]) == (event_id, "skipped", OUTSIDE_WINDOW)
    assert record["expire_at"] > record["created_at"]


def test_the_sender_skips_an_order_event_too_far_ahead() -> None:
    store, tiktok = MemoryStore(), ScriptedTikTok()
    envelope = make_envelope(source="shopify", event_time=NOW + ORDER_CLOCK_AHEAD_SECONDS + 3600)
    (outcome,) = _processor(store, tiktok).process([(envelope, "m1")])
    assert outcome.kind == Kind.SKIPPED and tiktok.requests == []


def test_the_sender_sends_an_order_event_at_the_edge_of_its_window() -> None:
    store, tiktok = MemoryStore(), ScriptedTikTok()
    envelope = make_envelope(source="woocommerce", event_time=NOW - 7 * DAY + 1)
    (outcome,) = _processor(store, tiktok).process([(envelope, "m1")])
    assert outcome.kind == Kind.SENT and len(tiktok.requests) == 1


def test_a_sent_order_redelivered_after_its_claim_expired_is_never_sent_again() -> None:
    """The whole promise on one clock: send, let the claim expire, redeliver at 10, 30, 90 days."""
    clock = {"now": NOW}
    store = MemoryStore(clock=lambda: dt.datetime.fromtimestamp(clock["now"], dt.timezone.utc))
    tiktok = ScriptedTikTok()
    processor = make_processor(store, tiktok, now=lambda: clock["now"])
    envelope = make_envelope("woocommerce:woo.local.test:order:9:Purchase", source="woocommerce", event_time=NOW)
    assert processor.process([(envelope, "m1")])[0].kind == Kind.SENT
    for days in (10, 30, 90):
        clock["now"] = NOW + days * DAY
        assert processor.process([(envelope, f"m{days}")])[0].kind == Kind.SKIPPED
    assert tiktok.requests == [[envelope.event_id]]


def test_a_browser_event_is_not_held_to_the_order_window() -> None:
    store, tiktok = MemoryStore(), ScriptedTikTok()
    envelope = make_envelope("page-view-1", source="collect", event="ViewContent", event_time=NOW - 30 * DAY)
    (outcome,) = _processor(store, tiktok).process([(envelope, "m1")])
    assert outcome.kind == Kind.SENT


def test_a_redriven_old_order_event_is_skipped_and_its_dead_record_resolved() -> None:
    store, tiktok = MemoryStore(), ScriptedTikTok()
    envelope = make_envelope("shopify:s.myshopify.com:order:5:Purchase", source="redrive", event_time=NOW - 9 * DAY)
    store.docs[(DEAD_EVENTS, doc_id(*envelope.claim_key()))] = {"state": "dead", "event_id": envelope.event_id}
    (outcome,) = _processor(store, tiktok).process([(envelope, "m1")])
    assert outcome.kind == Kind.SKIPPED and tiktok.requests == []
    assert (DEAD_EVENTS, doc_id(*envelope.claim_key())) not in store.docs


def test_an_old_order_event_skipped_by_the_sender_costs_one_write_in_the_batchs_one_final_rpc() -> None:
    store, tiktok = MemoryStore(), ScriptedTikTok()
    old = make_envelope(source="woocommerce", event_time=NOW - 30 * DAY)
    fresh = make_envelope(source="woocommerce", event_time=NOW - 60)
    outcomes = _processor(store, tiktok).process([(old, "m1"), (fresh, "m2")])
    assert [o.kind for o in outcomes] == [Kind.SKIPPED, Kind.SENT]
    assert store.calls.count("bulk") == 2  # the claim of the fresh one, then one final write for both


def test_make_report_counts_an_order_skipped_outside_its_window_under_that_rule() -> None:
    from shared import report

    store, tiktok = MemoryStore(), ScriptedTikTok()
    envelope = make_envelope(
        "woocommerce:woo.local.test:order:31:Purchase", source="redrive", event_time=NOW - 40 * DAY
    )
    _processor(store, tiktok).process([(envelope, "m1")])
    records = [data for (collection, _), data in store.docs.items() if collection == ORDER_EVENTS]
    summary = report.summarize(report.classify(records, [], []))
    assert summary["woocommerce"]["outcomes"]["skipped"] == 1
    assert summary["woocommerce"]["skipped_by_rule"] == {OUTSIDE_WINDOW: 1}


def test_a_cancellations_tombstone_outlives_the_widest_window_a_sender_may_be_configured_with() -> None:
    """The tombstone stands in for the Purchase's claim: expiring first would let a redelivered Purchase out."""
    from shared.receive.orders import TOMBSTONE_TTL

    widest = SenderSettings.model_fields["max_event_age_days"].metadata
    widest_days = next(m.le for m in widest if getattr(m, "le", None) is not None)
    assert budgets.order_claim_ttl(dt.timedelta(days=widest_days)) <= TOMBSTONE_TTL
    with pytest.raises(ConfigError):
        SenderSettings.from_env({"ORDER_MAX_EVENT_AGE_DAYS": str(widest_days + 1)})

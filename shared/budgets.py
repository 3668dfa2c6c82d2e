"""Every time budget of the pipeline, in one table, because they depend on each other.

A budget set alone looks harmless; against its neighbours it can lose events:
a webhook that answers after the platform gave up is retried (or, for
WooCommerce, lost), a claim lease shorter than a send lets a second attempt
send the same event, a wait longer than the function's timeout is cut by the
platform. ``tests/infra/test_budgets.py`` checks each dependency below against
the others and against Terraform's function timeouts, so changing one number
fails a test that names the one it now contradicts.

Settings that operators may tune (``CLAIM_LEASE_SECONDS``, ``TIKTOK_TIMEOUT_SECONDS``,
the ``SENDER_BATCH_*`` waits) keep their defaults here and their bounds in
:mod:`shared.config`.
"""

from __future__ import annotations

import datetime as dt

from shared.domain.events import ATTRIBUTION_WINDOW, ORDER_CLOCK_AHEAD_SECONDS

# --- what the platforms allow (../shared/reference/webhooks.md) ---------------------------------
SHOPIFY_ANSWER_SECONDS = 5.0  # Shopify gives up on a delivery after 5 s and retries it
WOOCOMMERCE_ANSWER_SECONDS = 60.0  # WooCommerce waits 60 s, once: it never retries
TIKTOK_DEDUP = dt.timedelta(hours=48)  # TikTok merges the same pixel + event + event_id within 48 h

# --- receivers ---------------------------------------------------------------------------------
# Shopify: every Firestore and Pub/Sub call of one delivery shares this, so the answer beats Shopify's 5 s.
SHOPIFY_IO_SECONDS = 4.0
# WooCommerce: Firestore calls, then the publish; each bounded (a delivery is never retried, so it parks).
WOOCOMMERCE_FIRESTORE_SECONDS = 5.0
WOOCOMMERCE_PUBLISH_SECONDS = 10.0
# Collect: a browser waits for its group commit's Firestore write, then for the publish.
COLLECT_STORE_SECONDS = 5.0
COLLECT_PUBLISH_SECONDS = 10.0
# The publisher's own RPC deadline (the bounded waits above cut it shorter where they must).
PUBLISH_RPC_SECONDS = 10.0

# --- the sender ----------------------------------------------------------------------------------
TIKTOK_TIMEOUT_SECONDS = 10.0  # one Events API request (TIKTOK_TIMEOUT_SECONDS)
CLAIM_LEASE_SECONDS = 60  # an attempt holds an event this long before another may take it over
SENDER_FIRESTORE_SECONDS = 15.0  # one bulk claim or finalize RPC (inside the lease, with the requests)
# The TikTok requests in sequence a claim's lease is sized for: a refused request, its good events resent
# and two bad ones alone. A batch that needs more (many bad events TikTok does not name) can outlive its
# lease; a redelivery may then resend events TikTok accepted, which TikTok merges within 48 h.
BISECTION_REQUESTS = 4
SENDER_BATCH_WAIT_MS = 50  # a batch waits this long for more events...
SENDER_BATCH_IDLE_MS = 15  # ...or less when nobody joined for this long...
SENDER_BATCH_HOLD_MS = 1000  # ...or longer, up to this, while the events a batch in flight holds come back
# TikTok throttling (40100, 40132, HTTP 429): the instance's gate (shared.send.throttle) stays closed this long
# after a throttled answer, doubling with each one in a row up to the ceiling; a push that arrives meanwhile
# waits at the gate up to the hold, then is re-published as a fresh message (or answered 503 without a
# publisher), so throttling alone never spends Pub/Sub's delivery attempts. The hold comes on top of
# sender_result_wait and both stay within the push's ack deadline (the sender's timeout, 120 s).
SENDER_THROTTLE_BASE_SECONDS = 1.0
SENDER_THROTTLE_MAX_SECONDS = 30.0
SENDER_THROTTLE_HOLD_SECONDS = 10.0

# --- what is remembered, and for how long ----------------------------------------------------------
ORDER_RECORD_TTL = dt.timedelta(days=8)  # outcome, cancellation and refund records (order_events)
# What an order event's claim must outlive beyond its window: the minutes between the sender's window check and
# its claim write, and instances' clocks; a day is ample and keeps the hours whole.
CLAIM_MARGIN = dt.timedelta(days=1)


def order_claim_ttl(max_event_age: dt.timedelta) -> dt.timedelta:
    """How long the sender's claim on an order event must live so that the order is sent once in its life.

    Why: the sender sends an order event at time r only if r - event_time <= max_event_age
    (``shared.domain.events.order_window_refusal``, against its own clock), so every copy that can
    still be sent arrives by event_time + max_event_age. The first copy was claimed at some s with
    event_time <= s + ORDER_CLOCK_AHEAD_SECONDS (a later event_time is refused too), so
    event_time + max_event_age <= s + max_event_age + ORDER_CLOCK_AHEAD_SECONDS. A claim that lives
    max_event_age + ORDER_CLOCK_AHEAD_SECONDS (plus CLAIM_MARGIN) from s is still there for every copy
    that passes the window, and every copy after it is refused by the window: no second Purchase, ever.
    """
    return max_event_age + dt.timedelta(seconds=ORDER_CLOCK_AHEAD_SECONDS) + CLAIM_MARGIN


# The sender's claims: an order event's only claim (CLAIM_TTL_HOURS' default), for the default window (9 days).
CLAIM_TTL = order_claim_ttl(ATTRIBUTION_WINDOW)
MAX_ORDER_AGE = dt.timedelta(days=7)  # the oldest order body a webhook accepts (SHOPIFY_MAX_ORDER_AGE_DAYS' maximum)
RECENT_SENT_SECONDS = 15 * 60  # a sender instance remembers the browser events it sent this long
KNOWN_CONTEXTS_SECONDS = 30 * 60  # a collect instance remembers the contexts it wrote this long


def sender_result_wait(tiktok_timeout_seconds: float, batch_hold_ms: float = SENDER_BATCH_HOLD_MS) -> float:
    """The longest one push waits for its batch: gathered, claimed, every request of a bisection, finalized.

    Past it the push answers 503 itself (Pub/Sub redelivers), before the
    function's timeout would cut it without an answer.
    """
    return batch_hold_ms / 1000 + 2 * SENDER_FIRESTORE_SECONDS + BISECTION_REQUESTS * tiktok_timeout_seconds

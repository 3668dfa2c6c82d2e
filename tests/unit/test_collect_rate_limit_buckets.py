"""Collect's per-client token buckets: a burst then one request per refill period, Retry-After, bounded memory."""

from __future__ import annotations

from shared.config import CollectSettings
from shared.receive.collect.ratelimit import TokenBuckets, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_gets_its_burst_then_one_request_per_refill_period():
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=3, clock=clock)
    assert [buckets.take("203.0.113.1").allowed for _ in range(4)] == [True, True, True, False]
    assert buckets.take("203.0.113.1").retry_after == 1
    assert buckets.take("203.0.113.2").allowed  # another client has its own bucket
    clock.now += 1.0
    assert buckets.take("203.0.113.1").allowed and not buckets.take("203.0.113.1").allowed
    clock.now += 60.0  # refilled, but never past the burst
    assert [buckets.take("203.0.113.1").allowed for _ in range(4)] == [True, True, True, False]


def test_retry_after_says_when_a_token_is_back():
    buckets = TokenBuckets(per_minute=6, burst=1, clock=Clock())
    assert buckets.take("198.51.100.1").allowed
    verdict = buckets.take("198.51.100.1")
    assert (verdict.allowed, verdict.retry_after) == (False, 10)


def test_zero_per_minute_turns_the_limit_off():
    buckets = TokenBuckets(per_minute=0, burst=1, clock=Clock())
    assert not buckets.enabled and all(buckets.take("203.0.113.1").allowed for _ in range(1000))
    assert len(buckets) == 0


def test_memory_is_bounded_by_evicting_the_least_recently_seen_client():
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=1, max_clients=100, clock=clock)
    assert buckets.take("10.0.0.1").allowed and not buckets.take("10.0.0.1").allowed
    for index in range(1000):
        buckets.take(f"10.1.{index // 256}.{index % 256}")
        assert len(buckets) <= 100
    assert buckets.take("10.0.0.1").allowed  # evicted long ago: it starts afresh


def test_an_ipv6_client_is_one_bucket_per_64_and_clients_without_an_address_share_one_limited_bucket():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    buckets = TokenBuckets(per_minute=60, burst=1, clock=Clock())
    assert buckets.take("2001:db8:1:2::1").allowed and not buckets.take("2001:db8:1:2::2").allowed
    assert buckets.take(None).allowed and not buckets.take(None).allowed and not buckets.take("").allowed
    assert buckets.take("203.0.113.1").allowed  # an addressed client is not held back by them


def test_the_defaults_are_documented_settings():
    settings = CollectSettings.from_env({"TIKTOK_PIXEL_CODE": "P"})
    assert (settings.rate_limit_per_minute, settings.rate_limit_burst) == (600, 120)
    assert CollectSettings.from_env({"COLLECT_RATE_LIMIT_PER_MINUTE": "0"}).rate_limit_per_minute == 0

"""A per-client rate limit on collect: 429 with Retry-After, bounded memory."""

from __future__ import annotations

import uuid

from tests.emulator.test_collect_function import (  # noqa: F401 (fixtures)
    make_collect,
    request_body,
)


def test_over_the_limit_collect_answers_429_with_retry_after_and_stores_nothing(make_collect):  # noqa: F811
    collect = make_collect(COLLECT_RATE_LIMIT_PER_MINUTE="1", COLLECT_RATE_LIMIT_BURST="3")
    flood = {"X-Forwarded-For": "203.0.113.66"}
    answers = [collect.post(request_body(f"cart-{uuid.uuid4().hex}"), headers=flood) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-Collect-Outcome"] == "rejected_rate_limit"
    assert "COLLECT_RATE_LIMIT_PER_MINUTE" in refused.get_json()["reason"]
    assert len(collect.contexts()) == 3 and len(collect.published(3)) == 3 and collect.nothing_published()
    # Another client is not held back by the first one's flood.
    other = collect.post(request_body(f"cart-{uuid.uuid4().hex}"), headers={"X-Forwarded-For": "198.51.100.9"})
    assert other.status_code == 200


def test_a_forwarded_for_that_names_no_address_is_limited_under_the_connections_own(make_collect):  # noqa: F811
    """``X-Forwarded-For: unknown`` (or garbage) must not buy an unlimited bucket."""
    collect = make_collect(COLLECT_RATE_LIMIT_PER_MINUTE="1", COLLECT_RATE_LIMIT_BURST="3")
    for forged in ("unknown", "not-an-address", ", ,"):
        answers = [collect.post(request_body(f"cart-{uuid.uuid4().hex}"), headers={"X-Forwarded-For": forged})
                   for _ in range(2)]  # fmt: skip
        if forged == "unknown":
            assert [a.status_code for a in answers] == [200, 200]
    # Six requests from one connection whatever header they carried: the burst of 3 is long spent.
    answers = [collect.post(request_body(f"cart-{uuid.uuid4().hex}"), headers={"X-Forwarded-For": "unknown"})
               for _ in range(2)]  # fmt: skip
    assert [a.status_code for a in answers] == [429, 429]
    assert answers[0].headers["X-Collect-Outcome"] == "rejected_rate_limit"

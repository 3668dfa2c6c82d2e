"""A poison collect request fails only itself.

A lone surrogate (``"\\ud800"``) in a custom property is valid JSON but not
text: it used to pass validation and then fail serialising the shared Pub/Sub
publish of the whole group commit, so at ~40 such requests per second most
legitimate requests of the same instance got 503 (and the snippet does not
retry). Every request comes from its own shopper address, so a per-client
rate limit is not what is measured.
"""

from __future__ import annotations

import pytest

from tests.reliability import scenarios

pytestmark = [pytest.mark.reliability, pytest.mark.stack]


def test_lone_surrogates_at_40_per_second_fail_only_themselves(rstack, http):
    result = scenarios.poison(rstack, http, poison_per_second=40, legitimate_per_second=20, seconds=5)
    summary = {k: v for k, v in result.items() if k != "tally"}
    print("poison at 40/s:", summary)
    answers = result["answers"]
    assert answers["poison"] and answers["legitimate"], summary
    assert set(answers["legitimate"]) == {200}, f"a legitimate request was not accepted: {summary}"
    assert set(answers["poison"]) == {400}, f"a poison request was not refused with 400: {summary}"
    assert (result["tally"].lost, result["tally"].duplicated) == ([], {}), summary

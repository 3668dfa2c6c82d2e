"""The consent decision: opt-in needs a grant, opt-out sends unless denied, sale-of-data limits."""

from __future__ import annotations

import pytest

from shared.domain.consent import ConsentSnapshot, decide


@pytest.mark.parametrize(
    ("snapshot", "policy", "send", "limited", "reason"),
    [
        (None, "opt-in", False, False, "no_consent"),
        (None, "opt-out", True, False, "policy_opt_out"),
        ({"granted": True}, "opt-in", True, False, "granted"),
        ({"granted": False}, "opt-out", False, False, "denied"),
        ({"ad_storage": "granted", "ad_user_data": "granted"}, "opt-in", True, False, "granted"),
        ({"ad_storage": "granted"}, "opt-in", False, False, "no_consent"),
        ({"ad_storage": "granted", "ad_user_data": "denied"}, "opt-in", False, False, "denied"),
        (
            {"ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "denied"},
            "opt-in",
            True,
            True,
            "granted",
        ),
        ({"marketing_allowed": True, "sale_of_data_allowed": False}, "opt-in", True, True, "granted"),
        ({"marketing_allowed": False}, "opt-out", False, False, "denied"),
        ({"sale_of_data_allowed": False}, "opt-out", True, True, "policy_opt_out"),
        ({"sale_of_data_allowed": False}, "opt-in", False, False, "no_consent"),
        ({}, "opt-in", False, False, "no_consent"),
    ],
)
def test_decision(snapshot, policy, send, limited, reason):
    decision = decide(None if snapshot is None else ConsentSnapshot(**snapshot), policy)
    assert (decision.send, decision.limited_data_use, decision.reason) == (send, limited, reason)

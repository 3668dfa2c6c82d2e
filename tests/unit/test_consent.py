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


# --- Global Privacy Control: an opt-out of sale and sharing, "limited" by default, "deny" where the pixel says --


@pytest.mark.parametrize(
    ("snapshot", "policy", "gpc", "send", "limited", "reason"),
    [
        ({"gpc": True}, "opt-out", "limited", True, True, "policy_opt_out"),
        ({"gpc": True}, "opt-in", "limited", False, False, "no_consent"),
        ({"gpc": True, "granted": True}, "opt-in", "limited", True, True, "granted"),
        ({"gpc": True, "granted": True}, "opt-out", "limited", True, True, "granted"),
        ({"gpc": True, "granted": False}, "opt-out", "limited", False, False, "denied"),
        ({"gpc": True}, "opt-out", "deny", False, False, "denied"),
        ({"gpc": True, "granted": True}, "opt-in", "deny", False, False, "denied"),
        ({"gpc": True, "marketing_allowed": True}, "opt-out", "deny", False, False, "denied"),
        ({"gpc": False}, "opt-out", "deny", True, False, "policy_opt_out"),
        ({"granted": True}, "opt-in", "deny", True, False, "granted"),
        (None, "opt-out", "deny", True, False, "policy_opt_out"),
    ],
)
def test_gpc_decision(snapshot, policy, gpc, send, limited, reason):
    decision = decide(None if snapshot is None else ConsentSnapshot(**snapshot), policy, gpc)
    assert (decision.send, decision.limited_data_use, decision.reason) == (send, limited, reason)


def test_the_default_gpc_mode_is_limited_and_the_decision_says_gpc_was_why():
    decision = decide(ConsentSnapshot(gpc=True), "opt-out")
    assert decision.limited_data_use and "Global Privacy Control" in decision.describe()
    denied = decide(ConsentSnapshot(gpc=True), "opt-out", "deny")
    assert not denied.send and "Global Privacy Control" in denied.describe()
    assert "Global Privacy Control" not in decide(ConsentSnapshot(sale_of_data_allowed=False), "opt-out").describe()


def test_a_stored_denial_alone_withholds_under_either_policy_and_a_grant_merged_over_it_sends():
    denial = ConsentSnapshot(granted=False).model_dump()
    for policy in ("opt-in", "opt-out"):
        assert decide(ConsentSnapshot.model_validate(denial), policy).reason == "denied"
    # A grant's merge writes every key (Nones included): nothing of the denial survives.
    granted = {**denial, **ConsentSnapshot(marketing_allowed=True).model_dump()}
    assert decide(ConsentSnapshot.model_validate(granted), "opt-in").reason == "granted"

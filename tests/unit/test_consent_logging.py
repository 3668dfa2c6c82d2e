"""Collect answers and logs a consent decision as it was decided: limited data use, a withdrawal replacing the
stored context, nothing stored.
"""

from __future__ import annotations

import json

from shared.domain.consent import ConsentDecision, ConsentSnapshot, decide
from shared.receive.collect.handler import handle, logged
from tests.unit import test_collect as tc


def test_a_sale_of_data_opt_out_is_answered_and_logged_with_limited_data_use(capsys):
    recorder = tc.Recorder()
    request = tc.post(tc.body(consent={"marketingAllowed": True, "saleOfDataAllowed": False}))
    reply = handle(request, tc.runtime(recorder))
    assert reply.status == 200 and recorder.published[0].limited_data_use is True
    assert reply.body["consent"] == "granted" and reply.body["limited_data_use"] is True
    capsys.readouterr()
    logged(reply, request).answer()  # the entry point logs the outcome line as it answers
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (line["consent"], line["limited_data_use"]) == ("granted", True)
    assert "limited_data_use" in line["message"]


def test_a_plain_grant_is_logged_without_limited_data_use(capsys):
    request = tc.post(tc.body())
    reply = handle(request, tc.runtime())
    logged(reply, request).answer()  # the entry point logs the outcome line as it answers
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (line["consent"], line["limited_data_use"]) == ("granted", False)
    assert "limited" not in line["message"]


def test_a_withdrawal_says_the_denial_alone_replaced_the_stored_context():
    recorder = tc.Recorder()
    reply = handle(tc.post(tc.body(consent={"marketingAllowed": False})), tc.runtime(recorder))
    assert reply.status == 204 and len(recorder.replaced) == 1 and not recorder.contexts
    [(_pixel, keys, context, _ttl)] = recorder.replaced
    assert keys and set(context) == {"consent"} and context["consent"]["marketing_allowed"] is False
    assert "denial alone" in reply.outcome.reason and "replacing" in reply.outcome.reason
    assert "nothing stored" not in reply.outcome.reason


def test_a_withholding_without_keys_to_delete_says_nothing_was_stored():
    reply = handle(tc.post(tc.body(consent=None, context={})), tc.runtime())
    assert reply.status == 204 and reply.outcome.reason == "consent no_consent: nothing stored or sent"


def test_the_decision_describes_itself_as_decided():
    assert ConsentDecision(True, True, "policy_opt_out").describe().startswith("policy_opt_out, with limited_data_use")
    assert decide(ConsentSnapshot(granted=True), "opt-in").describe() == "granted"

"""Match keys: which identifiers a delivered event carried, counted by name, never by value."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.domain.models import UserData
from shared.infra.metrics import COUNTERS
from shared.infra.store import EVENT_CLAIMS, doc_id
from tests.emulator.test_sender import make_sender, sandbox  # noqa: F401 (fixtures)
from tests.unit.test_delivery import PIXEL, make_envelope
from tests.unit.test_tiktok_api import RecordingSandbox

H = "a" * 64
RAW = {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (Keys)", "ttclid": "E.C.P.secret-click", "ttp": "ttp.secret"}


def test_the_sender_logs_counts_and_records_the_keys_of_what_it_delivered(
    make_sender: Callable[..., Any],  # noqa: F811
    sandbox: RecordingSandbox,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    store: Any,
) -> None:
    sender = make_sender()
    user = UserData(email=[H], phone=[H], **RAW)
    envelope = make_envelope(user=user, source="woocommerce", event="Purchase")
    labels = f"{PIXEL}.woocommerce.Purchase"
    before = COUNTERS.snapshot()
    capsys.readouterr()

    assert sender.push_envelope(envelope) == 200
    assert sender.push_envelope(envelope) == 200  # a redelivery: a duplicate, not counted again

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (sent,) = [line for line in lines if line.get("outcome") == "sent"]
    expected_keys = ["email", "phone", "ttclid", "ttp", "ip_user_agent"]
    assert (sent["match_keys"], sent["match_score"]) == (expected_keys, 9)
    assert (sent["pixel_code"], sent["source"], sent["event"]) == (PIXEL, "woocommerce", "Purchase")
    assert any(line.get("outcome") == "duplicate" for line in lines)
    for secret in (*RAW.values(), H):
        assert secret not in json.dumps(sent)

    after = COUNTERS.snapshot()
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert delta[f"delivered.{labels}"] == 1 and delta[f"match_score.{labels}"] == 9
    assert {k for k in delta if k.startswith("match_key.")} == {f"match_key.{k}.{labels}" for k in expected_keys}
    assert sender.app.test_client().get("/metrics").get_json()["counters"][f"delivered.{labels}"] >= 1

    # The claim, written anyway, names the source and the keys for the report: no write of its own.
    claim = store.collection(EVENT_CLAIMS).document(doc_id(*envelope.claim_key())).get().to_dict()
    assert (claim["state"], claim["source"], claim["match_keys"]) == ("sent", "woocommerce", expected_keys)
    assert delta["firestore.writes"] == 2 + 1  # claim and mark sent; the duplicate's refused create

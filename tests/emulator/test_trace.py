"""Logs that join up: a request's trace and a message's id on every line logged while handling it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.infra import log
from tests.conftest import push_body
from tests.emulator.test_sender import ROOT, make_sender, sandbox  # noqa: F401 (fixtures used by name)
from tests.unit.test_delivery import make_envelope
from tests.unit.test_trace import TRACE_ID, lines

# --- parsing the headers -----------------------------------------------------------------


# --- the context -------------------------------------------------------------------------


# --- through the functions ---------------------------------------------------------------


def test_the_senders_lines_carry_the_message_id_and_tiktoks_request_id(
    make_sender: Callable,  # noqa: F811
    sandbox: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    sender = make_sender(SENDER_BATCH_WAIT_MS="0")
    capsys.readouterr()
    envelope = make_envelope()
    body = push_body(envelope.to_json_bytes(), "pubsub-message-42")
    cloud_trace = f"{TRACE_ID}/99;o=1"
    status = sender.app.test_client().post("/", json=body, headers={"X-Cloud-Trace-Context": cloud_trace}).status_code
    assert status == 200
    records = lines(capsys.readouterr().out)
    (request,) = sandbox.http.get("/sandbox/requests").json()["requests"]
    (sent,) = [r for r in records if r.get("outcome") == "sent"]
    assert sent["message_id"] == "pubsub-message-42" and sent["request_id"] == request["request_id"]
    assert sent["event_id"] == envelope.event_id
    (answered,) = [r for r in records if r["message"] == "tiktok answered"]
    assert answered["request_id"] == request["request_id"] and answered["message_id"] == "pubsub-message-42"
    assert isinstance(answered["ms"], float) and answered["events"] == 1
    project = sent[log.TRACE].split("/")[1]
    for record in records:  # every line of the message, whichever module logged it
        assert record[log.TRACE] == f"projects/{project}/traces/{TRACE_ID}"
        assert record["message_id"] == "pubsub-message-42"

"""One trace from the receiving request to TikTok: published messages carry it, the sender logs under it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shared.infra import log
from shared.infra.deadline import bounded
from tests.conftest import push_body
from tests.emulator.test_sender import make_sender, sandbox  # noqa: F401 (fixtures used by name)
from tests.unit.test_delivery import make_envelope
from tests.unit.test_trace import lines

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def test_a_message_published_inside_a_traced_request_carries_its_traceparent(event_publisher, topic) -> None:
    with log.request_context({"traceparent": TRACEPARENT}):
        event_publisher.publish([make_envelope()])
    (message,) = topic.pull_all(1)
    assert message.attributes["traceparent"] == TRACEPARENT
    assert message.attributes["event"] == "Purchase"  # the envelope's own attributes stay


def test_the_trace_survives_a_bounded_call_and_the_publishers_helper_thread(event_publisher, topic) -> None:
    # Both webhooks publish through shared.infra.deadline.bounded (a thread); collect through publish_async (a pool).
    with log.request_context({"X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1"}):
        bounded("pubsub", 10, lambda: event_publisher.publish([make_envelope()]))
        event_publisher.publish_async([make_envelope()]).result(timeout=10)
    messages = topic.pull_all(2)
    assert [m.attributes["traceparent"] for m in messages] == [f"00-{TRACE_ID}-0000000000000001-01"] * 2


def test_each_envelope_of_a_group_keeps_its_own_requests_trace(event_publisher, topic) -> None:
    other = f"00-{'1' * 32}-{'2' * 16}-00"
    event_publisher.publish_async([make_envelope(), make_envelope()], [TRACEPARENT, other]).result(timeout=10)
    assert sorted(m.attributes["traceparent"] for m in topic.pull_all(2)) == sorted([TRACEPARENT, other])


def test_outside_a_trace_nothing_is_added(event_publisher, topic) -> None:
    event_publisher.publish([make_envelope()])
    (message,) = topic.pull_all(1)
    assert "traceparent" not in message.attributes


def test_the_sender_logs_under_the_trace_of_the_request_that_published_the_message(
    make_sender: Callable,  # noqa: F811
    sandbox: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    sender = make_sender(SENDER_BATCH_WAIT_MS="0")
    capsys.readouterr()
    body = push_body(make_envelope().to_json_bytes(), "m-7", attributes={"traceparent": TRACEPARENT})
    # The push itself arrives with a trace of its own; the webhook's is the one an operator follows.
    own = f"{'9' * 32}/5;o=1"
    response = sender.app.test_client().post("/", json=body, headers={"X-Cloud-Trace-Context": own})
    assert response.status_code == 200
    ours = lines(capsys.readouterr().out)
    assert any(r.get("outcome") == "sent" for r in ours)
    for record in ours:
        assert record[log.TRACE].endswith(f"/traces/{TRACE_ID}"), record


def test_a_malformed_traceparent_attribute_leaves_the_pushs_own_trace(
    make_sender: Callable,  # noqa: F811
    sandbox: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    sender = make_sender(SENDER_BATCH_WAIT_MS="0")
    capsys.readouterr()
    body = push_body(make_envelope().to_json_bytes(), "m-8", attributes={"traceparent": "00-not-a-trace"})
    own = f"{'9' * 32}/5;o=1"
    assert sender.app.test_client().post("/", json=body, headers={"X-Cloud-Trace-Context": own}).status_code == 200
    sent = [r for r in lines(capsys.readouterr().out) if r.get("outcome") == "sent"]
    assert sent and sent[0][log.TRACE].endswith(f"/traces/{'9' * 32}")


def test_a_collect_group_commit_keeps_each_requests_trace(store, event_publisher, topic) -> None:
    from shared.receive.collect.commit import commit_plans
    from tests.emulator.test_collect_isolation import _plan

    first, second = f"00-{'a' * 32}-{'b' * 16}-01", f"00-{'c' * 32}-{'d' * 16}-01"
    with log.request_context({"traceparent": first}):
        one = _plan(uuid.uuid4().hex, "first")
    with log.request_context({"traceparent": second}):
        two = _plan(uuid.uuid4().hex, "second")
    with log.request_context({"traceparent": TRACEPARENT}):  # the leader's own trace must not leak onto theirs
        assert all(not isinstance(o, Exception) for o in commit_plans([one, two], store, event_publisher))
    by_trace = {m.attributes["traceparent"] for m in topic.pull_all(len(one.envelopes) + len(two.envelopes))}
    assert by_trace == {first, second}

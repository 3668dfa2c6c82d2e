"""Logs that join up: a request's trace parsed from its headers and bound to every line logged while handling it."""

from __future__ import annotations

import json
import threading
from typing import Any

import functions_framework
import pytest

from shared.infra import log
from shared.outcome import Kind
from tests.helpers import ROOT

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def lines(out: str) -> list[dict[str, Any]]:
    """Our structured lines (the in-process sandbox's own request lines carry ``method``: left out)."""
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in records if "method" not in r]


def test_traceparent_gives_the_trace_the_span_and_the_sampled_flag() -> None:
    assert log.parse_trace({"traceparent": TRACEPARENT}) == (TRACE_ID, "00f067aa0ba902b7", True)
    assert log.parse_trace({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-00"}) == (
        TRACE_ID,
        "00f067aa0ba902b7",
        False,
    )


def test_cloud_trace_context_is_the_fallback_and_its_decimal_span_becomes_hex() -> None:
    headers = {"X-Cloud-Trace-Context": f"{TRACE_ID}/1234567890;o=1"}
    assert log.parse_trace(headers) == (TRACE_ID, f"{1234567890:016x}", True)
    assert log.parse_trace({"X-Cloud-Trace-Context": TRACE_ID}) == (TRACE_ID, None, False)


def test_traceparent_wins_over_cloud_trace_context() -> None:
    headers = {"traceparent": TRACEPARENT, "X-Cloud-Trace-Context": "a" * 32 + "/1;o=1"}
    assert log.parse_trace(headers)[0] == TRACE_ID  # type: ignore[index]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},  # all-zero trace id is invalid
        {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},
        {"traceparent": f"ff-{TRACE_ID}-00f067aa0ba902b7-01"},  # version ff is forbidden
        {"traceparent": f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01"},
        {"traceparent": f'00-{TRACE_ID}-00f067aa0ba902b7-01","severity":"ERROR'},
        {"X-Cloud-Trace-Context": "not-a-trace"},
        {"X-Cloud-Trace-Context": f"{TRACE_ID}/12;o=1\nINJECTED"},
        {"X-Cloud-Trace-Context": "0" * 32 + "/1;o=1"},
    ],
)
def test_malformed_trace_headers_give_no_trace(headers: dict[str, str]) -> None:
    assert log.parse_trace(headers) is None
    assert log.trace_fields(headers, "proj") == {}


def test_trace_fields_name_the_project() -> None:
    assert log.trace_fields({"traceparent": TRACEPARENT}, "my-proj") == {
        log.TRACE: f"projects/my-proj/traces/{TRACE_ID}",
        log.SAMPLED: True,
        log.SPAN: "00f067aa0ba902b7",
    }
    assert log.trace_fields({"traceparent": TRACEPARENT}, None) == {}


def test_lines_inside_a_request_carry_its_trace_and_bound_ids_and_none_after(monkeypatch, capsys) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-proj")
    with log.request_context({"traceparent": TRACEPARENT}):
        log.info("first")
        log.bind(message_id="m-1")
        log.outcome("sent", "second", request_id="r-1")
    log.info("after")
    first, second, after = lines(capsys.readouterr().out)
    assert first[log.TRACE] == second[log.TRACE] == f"projects/my-proj/traces/{TRACE_ID}"
    assert "message_id" not in first and second["message_id"] == "m-1" and second["request_id"] == "r-1"
    assert log.TRACE not in after and "message_id" not in after


def test_an_explicit_field_wins_over_the_bound_one(capsys) -> None:
    with log.request_context({}, message_id="bound"):
        log.info("x", message_id="explicit")
    assert lines(capsys.readouterr().out)[0]["message_id"] == "explicit"


def test_concurrent_requests_keep_their_own_trace(monkeypatch, capsys) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    barrier = threading.Barrier(2)

    def request(trace_id: str) -> None:
        with log.request_context({"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}):
            barrier.wait(5)  # both contexts set before either logs
            log.info("mine", mine=trace_id)

    threads = [threading.Thread(target=request, args=(c * 32,)) for c in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for record in lines(capsys.readouterr().out):
        assert record[log.TRACE] == f"projects/p/traces/{record['mine']}"


def test_a_request_with_a_traceparent_logs_lines_that_carry_the_trace(monkeypatch, capsys) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "trace-proj")
    app = functions_framework.create_app(target="sender", source=str(ROOT / "functions" / "sender" / "main.py"))
    # Not a push: refused before any settings or client are needed, and logged.
    response = app.test_client().post("/", json={"not": "a push"}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 400
    (record,) = lines(capsys.readouterr().out)
    assert record["outcome"] == Kind.REFUSED
    assert record[log.TRACE] == f"projects/trace-proj/traces/{TRACE_ID}"
    assert record[log.SPAN] == "00f067aa0ba902b7" and record[log.SAMPLED] is True
    # The thread is reused by the server: the next request without a trace has none.
    app.test_client().post("/", json={"not": "a push"})
    (untraced,) = lines(capsys.readouterr().out)
    assert log.TRACE not in untraced

"""The benchmark's cost arithmetic (bench/cost.py) and its reading of the reference price list."""

from __future__ import annotations

import pytest

from bench import cost
from bench.__main__ import headline

PRICES = {
    "request_per_million": 0.40,
    "vcpu_second": 0.000024,
    "gib_second": 0.0000025,
    "firestore_read_per_100k": 0.03,
    "firestore_write_per_100k": 0.09,
    "firestore_delete_per_100k": 0.01,
    "pubsub_per_tib": 40.0,
    "pubsub_min_bytes": 1000.0,
}


def figures(receiver_cpu_ms: float = 2.0) -> dict:
    per_request = {"firestore.reads": 2.0, "firestore.writes": 3.0, "firestore.deletes": 0.0,
                   "pubsub.messages": 1.0, "pubsub.bytes": 1400.0, "cpu_ms": receiver_cpu_ms}  # fmt: skip
    sender_row = {
        "concurrency": 128,
        "cpu_ms_per_event": 1.0,
        "firestore_reads_per_event": 0.0,
        "firestore_writes_per_event": 2.0,
        "firestore_deletes_per_event": 0.0,
        "events_per_second": 300.0,
        "tiktok_requests_per_event": 0.04,
        "firestore_rpcs_per_event": 0.08,
    }
    return {
        "shopify_bench": {"concurrent": {"per_request": per_request},
                          "webhook_to_sandbox": {"p50_ms": 300, "p99_ms": 900},
                          "webhook_to_sandbox_under_load": {"p50_ms": 3000, "p99_ms": 5000,
                                                            "events": 400, "expected": 400}},
        "sender_bench": {"sender": {"batching_on": [{**sender_row, "concurrency": 1, "cpu_ms_per_event": 9.0},
                                                    sender_row]}},
    }  # fmt: skip


def test_the_reference_price_list_is_read_as_written():
    try:
        prices = cost.load_prices()
    except cost.PricesNotFound as exc:
        pytest.fail(f"bench/prices.md should be in the repository: {exc}")
    assert prices == PRICES


def test_a_price_list_that_changed_its_wording_is_reported_not_guessed(tmp_path):
    changed = tmp_path / "gcp.md"
    changed.write_text("Firestore: $0.06 per 100,000 document reads")
    with pytest.raises(cost.PricesNotFound, match="request_per_million"):
        cost.load_prices(changed)


def test_cost_per_million_events_by_hand():
    result = cost.estimate(figures(), PRICES)["usd_per_million_events"]
    assert list(result) == ["shopify"]  # the other paths were not measured: left out, not zero
    shopify = result["shopify"]
    # 2 requests ($0.80) + 3 ms of CPU (the sender's at its highest load: 1 ms) at 1 vCPU and 0.5 GiB.
    assert shopify["functions"] == pytest.approx(0.80 + 3.0 * 0.024 + 3.0 * 0.5 * 0.0025, abs=0.01)
    # 2 reads, 5 writes, 5 TTL deletes per event.
    assert shopify["firestore"] == pytest.approx(10 * (2 * 0.03 + 5 * 0.09 + 5 * 0.01), abs=0.01)
    # 1400 bytes published and pushed.
    assert shopify["pubsub"] == pytest.approx(2 * 1400 / 2**40 * 40 * 1_000_000, abs=0.01)
    assert shopify["total"] == pytest.approx(shopify["functions"] + shopify["firestore"] + shopify["pubsub"], 0.02)
    assert shopify["inputs_per_event"]["cpu_ms"] == 3.0


def test_the_summary_names_each_aim():
    lines = "\n".join(headline(figures()))
    assert "0.04 TikTok requests/event (aim <= 0.02)" in lines
    assert "p50 3000 ms, p99 5000 ms under load (400/400)" in lines


def test_the_browser_path_costs_the_documents_of_a_realistic_session():
    measured = figures()
    measured["collect_bench_deployed"] = {
        "collect_accepted": {"per_request": {"firestore.writes": 1.0, "pubsub.messages": 1.0, "pubsub.bytes": 900.0},
                             "server_cpu_ms_per_request": 1.0},
    }  # fmt: skip
    without_session = cost.estimate(measured, PRICES)["usd_per_million_events"]["collect"]
    assert without_session["inputs_per_event"]["firestore_writes"] == 3.0  # 1 context + the sender's claim and mark
    session = {"receiver": {"firestore.reads": 0.0, "firestore.writes": 0.167, "firestore.deletes": 0.0},
               "sender": {"firestore.reads": 0.0, "firestore.writes": 1.0, "firestore.deletes": 0.0}}  # fmt: skip
    measured["session_bench"] = {"events_per_session": 6, "per_event": {**session, "total": {
        "firestore.reads": 0.0, "firestore.writes": 1.167}}}  # fmt: skip
    collect = cost.estimate(measured, PRICES)["usd_per_million_events"]["collect"]
    assert collect["inputs_per_event"]["firestore_writes"] == 1.167
    assert collect["firestore"] == pytest.approx(10 * 1.167 * (0.09 + 0.01), abs=0.01)
    assert collect["inputs_per_event"]["cpu_ms"] == 2.0  # the receiver's CPU and the sender's still apply
    # The order paths keep the sender's own figures.
    assert cost.estimate(measured, PRICES)["usd_per_million_events"]["shopify"]["inputs_per_event"][
        "firestore_writes"] == 5.0  # fmt: skip
    lines = "\n".join(headline({"session_bench": measured["session_bench"]}))
    assert "then 5 more events): 1.167 Firestore writes (aim <= 1.2)" in lines

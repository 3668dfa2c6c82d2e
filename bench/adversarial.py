"""Issue 12's adversarial table, re-measured: lost, duplicated and 5xx per scenario, at the issue's sizes.

The reliability suite (``tests/reliability``, part of ``make test``) runs the
same scenarios small enough for a few minutes; this runs them at the sizes the
issue measured (minutes, hundreds of orders), plus the long TikTok-fault run.
Each scenario gets a fresh stack (its own emulators, functions and sandbox, on
free ports, as ``make run`` starts them) so one scenario's damage never
counts against the next. Not part of ``make test`` nor of ``make bench``::

    .venv/bin/python -m bench.adversarial                 # every scenario (about 15 minutes on 2 cores)
    .venv/bin/python -m bench.adversarial firestore_pause sender_kills --scale 0.5

Prints one table row per scenario and writes bench/results/adversarial-<time>.json.
See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import httpx  # noqa: E402
import localstack  # noqa: E402

from tests.reliability import scenarios  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _n(value: float, scale: float) -> int:
    return max(1, round(value * scale))


# name -> (what the table calls it, traffic as printed, runner(stack, http, scale) -> result)
Runner = Callable[[scenarios.ReliabilityStack, httpx.Client, float], dict[str, Any]]


def _firestore_pause(rs: scenarios.ReliabilityStack, http: httpx.Client, scale: float) -> dict[str, Any]:
    result = scenarios.firestore_pause(rs, http, shopify_orders=_n(400, scale), woocommerce_orders=_n(200, scale),
                                       traffic_seconds=40, pause_at=10, pause_seconds=20)  # fmt: skip
    return {**result, "5xx": result["shopify_5xx"] + len(result["woocommerce_not_2xx"])}


def _worker_kills(rs: scenarios.ReliabilityStack, http: httpx.Client, scale: float) -> dict[str, Any]:
    result = scenarios.shopify_worker_kills(
        rs, http, orders_per_round=_n(50, scale), kill_after=[0.02, 0.08, 0.15, 0.3]
    )
    return {**result, "5xx": result["shopify_5xx"]}


def _master_kill(rs: scenarios.ReliabilityStack, http: httpx.Client, scale: float) -> dict[str, Any]:
    result = scenarios.shopify_master_kill(rs, http, orders=_n(100, scale), seconds=20, kill_at=5)
    return {**result, "5xx": result["shopify_5xx"]}


def _tiktok_faults(minutes: float) -> Runner:
    def run(rs: scenarios.ReliabilityStack, http: httpx.Client, scale: float) -> dict[str, Any]:
        return scenarios.tiktok_faults(rs, http, shopify_orders=_n(400, scale), woocommerce_orders=_n(200, scale),
                                       seconds=minutes * 60, error_rate=0.33)  # fmt: skip

    return run


def _sender_kills(rs: scenarios.ReliabilityStack, http: httpx.Client, scale: float) -> dict[str, Any]:
    result = scenarios.sender_kills(
        rs, events=_n(600, scale), per_second=30, kill_at=[3, 8, 13, 18], latency_ms=300, settle_seconds=300
    )
    return {**result, "5xx": 0}


def _poison(rs: scenarios.ReliabilityStack, http: httpx.Client, scale: float) -> dict[str, Any]:
    result = scenarios.poison(rs, http, poison_per_second=40, legitimate_per_second=40, seconds=10 * scale)
    return {**result, "lost": result["legitimate_refused"] + result["lost"]}


SCENARIOS: dict[str, tuple[str, str, Runner]] = {
    "firestore_pause": ("Firestore emulator paused 20 s during webhook traffic", "600 orders + duplicates",
                        _firestore_pause),
    "shopify_worker_kills": ("Shopify function's worker killed 4 times", "200 orders", _worker_kills),
    "shopify_master_kill": ("Shopify function's master killed (restarted by the stack)", "100 orders",
                            _master_kill),
    "tiktok_faults_4min": ("TikTok sandbox failing 33% (5xx, 40100, timeouts) for 4 minutes",
                           "600 orders + 20x20 duplicates", _tiktok_faults(4)),
    "tiktok_faults_40s": ("the same for 40 s", "same", _tiktok_faults(40 / 60)),
    "sender_kills": ("sender worker SIGKILL mid-batch (4 times)", "600 events", _sender_kills),
    "poison": ("poison collect requests (lone surrogate) at 40/s", "400 legitimate + 400 poison", _poison),
}  # fmt: skip

# Hostile input: the suite's hypothesis tests, with more examples; a failing test prints its first 5xx.
FUZZ_TESTS = {
    "fuzz_collect": "test_collect_answers_any_request_without_a_5xx",
    "fuzz_shopify": "test_the_shopify_webhook_answers_any_delivery_without_a_5xx",
    "fuzz_woocommerce": "test_the_woocommerce_webhook_answers_any_delivery_without_a_5xx",
    "fuzz_sender": "test_the_senders_push_endpoint_answers_any_body_without_a_5xx",
}


def run_scenario(name: str, scale: float) -> dict[str, Any]:
    title, traffic, runner = SCENARIOS[name]
    emulators = localstack.Emulators(project="adversarial", pubsub_port=localstack.free_port(),
                                     firestore_port=localstack.free_port())  # fmt: skip
    saved = {k: os.environ.get(k) for k in emulators.env}
    started = time.monotonic()
    emulators.start()
    os.environ.update(emulators.env)
    try:
        with scenarios.running_stack(emulators) as rs, httpx.Client(timeout=30) as http:
            result = runner(rs, http, scale)
    finally:
        emulators.stop()
        localstack.restore_environ(saved)
    tally = result.pop("tally")
    return {
        "scenario": name, "test": title, "traffic": traffic if scale == 1 else f"{traffic}, scaled x{scale:g}",
        "scale": scale,
        "5xx": result.get("5xx"), "lost": len(tally.lost), "duplicated": sum(n - 1 for n in tally.duplicated.values()),
        "seconds": round(time.monotonic() - started, 1),
        "details": {k: v for k, v in result.items() if k not in ("lost", "duplicated")},
    }  # fmt: skip


def run_fuzz(examples: int) -> list[dict[str, Any]]:
    """The suite's fuzz tests with ``examples`` examples each; a row per test and variant."""
    env = {**os.environ, "RELIABILITY_FUZZ_EXAMPLES": str(examples)}
    command = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "reliability" / "test_fuzz.py"), "-q", "-rA",
               "-p", "no:cacheprovider"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    rows = []
    for line in done.stdout.splitlines():
        match = re.match(r"^(PASSED|FAILED) \S+::(\w+)(\[\w+\])?", line)
        if match:
            status, test, variant = match.groups()
            name = next((k for k, v in FUZZ_TESTS.items() if v == test), test)
            rows.append({"scenario": name + (variant or ""), "test": f"hostile input ({examples} examples)",
                         "traffic": examples, "5xx": 0 if status == "PASSED" else "at least 1",
                         "lost": "", "duplicated": "", "details": {"result": status}})  # fmt: skip
    failures = re.findall(r"AssertionError: (5\d\d .{0,300})", done.stdout)
    for row, failure in zip([r for r in rows if r["details"]["result"] == "FAILED"], failures, strict=False):
        row["details"]["first_5xx"] = failure
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of: {', '.join([*SCENARIOS, 'fuzz'])} (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies order counts (and the poison run)")
    parser.add_argument("--fuzz-examples", type=int, default=500)
    args = parser.parse_args(argv)
    chosen = args.scenarios or [*SCENARIOS, "fuzz"]
    unknown = [name for name in chosen if name not in SCENARIOS and name != "fuzz"]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    rows = []
    for name in chosen:
        found = run_fuzz(args.fuzz_examples) if name == "fuzz" else [run_scenario(name, args.scale)]
        for row in found:
            rows.append(row)
            print(f"| {row['test']} | {row['traffic']} | {row['5xx']} | {row['lost']} | {row['duplicated']} |",
                  json.dumps(row["details"], default=str)[:400], flush=True)  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"adversarial-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(rows, indent=2, default=str))
    print(f"written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

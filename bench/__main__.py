"""`make bench`: every benchmark in one run, printed and written to bench/results/<time>.json.

Each part starts its own emulators and processes on free ports, drives bounded,
self-stopping load on loopback and stops everything. Not part of `make test`.
The run ends with the headline figures next to their aims and the cost per
million events computed from what the parts measured (bench/cost.py).

    python -m bench [part ...]     # parts: see PARTS; OPTIONAL_PARTS run only when named

``spike`` (bench/spike_bench.py, sale day: a steady mix, ten times that for a minute, steady again)
takes 2.6 minutes on 2 cores (up to 7 while a slow backlog drains), as long as every other part together,
so it runs only when named: ``make bench BENCH_ARGS=spike``. So does ``throttle`` (bench/throttle_bench.py,
TikTok answering every request 40100 for 3 minutes at 20 events/s, then the backlog's drain; about 6 minutes):
``make bench BENCH_ARGS=throttle``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import cost  # noqa: E402

PARTS = (
    "import_times",
    "collect_bench",
    "collect_bench_deployed",
    "session_bench",
    "shopify_bench",
    "woocommerce_bench",
    "sender_bench",
)
# Run only when named (longer than the rest together).
OPTIONAL_PARTS = ("spike", "throttle", "reconcile")
# part -> (module, arguments). The sender's offered loads: enough levels to show the curve, bounded to
# keep `make bench` short. collect_bench_deployed runs collect as Terraform deploys it (THREADS = the
# instance's concurrency, 80) under 64 connections; collect_bench at 8 threads and 16 connections.
PART_COMMANDS = {
    "collect_bench_deployed": ("collect_bench", ["--threads", "80", "--concurrency", "64"]),
    "sender_bench": ("sender_bench", ["--concurrency", "1,16,64,128"]),
    "spike": ("spike_bench", []),
    "throttle": ("throttle_bench", []),
    "reconcile": ("reconcile_bench", []),
}


def headline(figures: dict[str, Any]) -> list[str]:
    """The figures the throughput issue asks for, each next to its aim."""
    lines = []
    for part in ("collect_bench", "collect_bench_deployed"):
        collect = figures.get(part)
        if not collect:
            continue
        noop, settings = collect["noop"], collect["settings"]
        lines.append(f"collect, {settings['threads']} threads, {settings['concurrency']} connections:")
        for name in ("collect_withheld", "collect_accepted"):
            row = collect[name]
            cpu_ratio = noop["server_cpu_ms_per_request"] / row["server_cpu_ms_per_request"]
            lines.append(
                f"  {name}: {row['requests_per_second']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms; "
                f"{row['ratio_to_noop']} x the no-op's {noop['requests_per_second']} req/s (aim > 0.7); "
                f"CPU per request {row['server_cpu_ms_per_request']} ms vs {noop['server_cpu_ms_per_request']} ms "
                f"({cpu_ratio:.2f})"
            )
    session = figures.get("session_bench")
    if session:
        total, receiver = session["per_event"]["total"], session["per_event"]["receiver"]
        lines.append(
            f"browser session (a landing with a ttclid, then {session['events_per_session'] - 1} more events): "
            f"{total['firestore.writes']} Firestore writes (aim <= 1.2) and {total['firestore.reads']} reads "
            f"per delivered event; collect {receiver['firestore.writes']}, "
            f"sender {session['per_event']['sender']['firestore.writes']}"
        )
    sender = figures.get("sender_bench")
    if sender:
        for mode, rows in sender["sender"].items():
            top = max(rows, key=lambda row: row["concurrency"])
            lines.append(
                f"sender {mode} at {top['concurrency']} concurrent: {top['events_per_second']} events/s, "
                f"{top['tiktok_requests_per_event']} TikTok requests/event (aim <= 0.02), "
                f"{top['firestore_rpcs_per_event']} Firestore RPCs/event"
            )
    for name in ("shopify_bench", "woocommerce_bench"):
        part = figures.get(name)
        if part:
            quiet, busy = part["webhook_to_sandbox"], part["webhook_to_sandbox_under_load"]
            platform = name.split("_")[0]
            if "first_delivery_ms" in part:
                lines.append(f"{platform} webhook, first delivery after start: {part['first_delivery_ms']} ms")
            lines.append(
                f"{platform} webhook -> sandbox: p50 {quiet['p50_ms']} ms, p99 {quiet['p99_ms']} ms "
                f"one at a time; p50 {busy['p50_ms']} ms, p99 {busy['p99_ms']} ms under load "
                f"({busy['events']}/{busy['expected']})"
            )
    spike = figures.get("spike")
    if spike:
        lone, phases, ratio = spike["lone"], spike["phases"], spike["ratios"]["spike"]
        lines.append(
            f"lone order (idle stack, nothing else in flight) -> sandbox: p50 {lone['p50_ms']} ms, "
            f"p99 {lone['p99_ms']} ms"
        )
        lines.append(
            f"spike x{spike['settings']['factor']}: {phases['spike']['events_per_second']} events/s, "
            f"webhook -> sandbox p50 {phases['spike']['webhook_to_sandbox']['p50_ms']} ms (x{ratio['p50']} steady), "
            f"p99 {phases['spike']['webhook_to_sandbox']['p99_ms']} ms (x{ratio['p99']}), backlog "
            f"{phases['spike']['backlog_max']}, drained {phases['spike']['drain_seconds']} s after; "
            f"lost {spike['lost']}, duplicated {spike['duplicated']}"
        )
    throttle = figures.get("throttle")
    if throttle:
        s, phases = throttle["settings"], throttle["phases"]
        lines.append(
            f"TikTok throttling everyone for {s['minutes']} min at {s['events_per_second']} events/s: "
            f"{phases['throttle']['tiktok_requests_per_minute']} TikTok requests/min, "
            f"{phases['throttle']['sender_throttle'].get('requeued', 0)} pushes re-published; drained "
            f"{throttle['drain_seconds']} s after it lifted; dead {throttle['dead_records']} records, "
            f"{throttle['dead_letters']} letters; lost {throttle['lost']}, duplicated {throttle['duplicated']}"
        )
    imports = figures.get("import_times")
    if imports:
        slowest = max(imports["functions"].items(), key=lambda item: item[1]["import_seconds"])
        lines.append(f"slowest entry point import: {slowest[0]} {slowest[1]['import_seconds'] * 1000:.0f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    only = set(argv if argv is not None else sys.argv[1:]) or set(PARTS)
    unknown = only - set(PARTS) - set(OPTIONAL_PARTS)
    if unknown:
        print(f"unknown parts: {', '.join(sorted(unknown))}; choose from {', '.join((*PARTS, *OPTIONAL_PARTS))}",
              file=sys.stderr)  # fmt: skip
        return 2
    started_all = time.monotonic()
    results: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "parts": {}}
    figures: dict[str, Any] = {}
    failed = []
    with tempfile.TemporaryDirectory() as scratch:
        for part in (*PARTS, *OPTIONAL_PARTS):
            if part not in only:
                continue
            print(f"\n===== {part} =====", flush=True)
            started = time.monotonic()
            out = Path(scratch) / f"{part}.json"
            # Each part in its own process: one part's clients and threads cannot skew the next.
            module, arguments = PART_COMMANDS.get(part, (part, []))
            command = [sys.executable, "-m", f"bench.{module}", *arguments, "--json", str(out)]
            completed = subprocess.run(command, cwd=ROOT, text=True, capture_output=True)
            print("\n".join(line for line in completed.stdout.splitlines() if not line.startswith("{")), flush=True)
            if completed.returncode != 0 or not out.is_file():
                failed.append(part)
                print(completed.stderr[-3000:], file=sys.stderr)
            else:
                figures[part] = json.loads(out.read_text())
            results["parts"][part] = {"seconds": round(time.monotonic() - started, 1),
                                      "returncode": completed.returncode}  # fmt: skip
    results["figures"] = figures
    print("\n===== summary =====")
    for line in headline(figures):
        print(line)
    try:
        results["cost"] = cost.estimate(figures)
        print(cost.format_estimate(results["cost"]))
    except cost.PricesNotFound as exc:
        print(f"cost estimate skipped: {exc}")
    results["seconds"] = round(time.monotonic() - started_all, 1)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nall parts in {results['seconds']} s; figures written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

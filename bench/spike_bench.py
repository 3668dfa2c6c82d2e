"""Sale day on 2 cores: the local stack under a steady mix, then ten times that for a while, then steady again.

Starts its own emulators, functions and sandbox on free ports (logs in a
temporary LOCAL_RUN_DIR), with ``CONSENT_POLICY=opt-out`` and one trusted proxy
hop as the reliability suite runs (every paid order must reach TikTok; each
browser session is its own shopper). Then:

1. **lone**: single Shopify orders on the idle stack, each sent only once the
   one before is at the sandbox and a pause has passed, so nothing else is in
   flight: the webhook-to-TikTok latency of one order (beside ``shopify_bench``'s
   "one at a time", which sends the next delivery as soon as the webhook
   answers and so measures a queue).
2. **steady**, **spike** (``--factor`` times the rate, ``--spike-seconds``),
   **after** (steady again): Shopify orders (a quarter as ``orders/create`` then
   ``orders/paid``, a tenth delivered twice at once under one webhook id,
   every non-2xx retried as Shopify does), WooCommerce orders (posted once), and
   browser sessions to collect (a landing with a ttclid, then five events,
   half a second apart). Open loop: each arrives on schedule, answered or not.
3. **drain**: until every accepted event is at the sandbox (or ``--drain-timeout``).

Per phase (by when the traffic was sent): answers by status; webhook-to-sandbox
latency of the orders (p50, p99); the backlog (events answered as published or
accepted but not yet at the sandbox; the sandbox's own arrival times, so no
sampling) and, after the spike, how long it took to fall back to the steady
level; Firestore contention and the functions' outcomes (``GET /metrics``
deltas: ``firestore.aborted`` and ``firestore.resource_exhausted`` are the
sender's bulk writes refused for contention or Firestore's limits; 503s are the
receivers'); peak RSS of each function's process tree; TikTok requests. At the
end: lost and duplicated expected events at the sandbox (must be 0 and 0). The
spike's figures are also given as ratios to the steady phase's.

Not in ``make bench``'s default set (2.6 minutes at the defaults on 2 cores, up to 7 when the backlog
drains slowly; ``make bench`` itself takes 2.5):
``make bench BENCH_ARGS=spike`` or ``python -m bench.spike_bench [--spike-seconds 15 --steady-seconds 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
# Logs and the stack's record in a folder of this run's own, before localstack reads it at import.
os.environ["LOCAL_RUN_DIR"] = tempfile.mkdtemp(prefix="spike-bench-")

import httpx  # noqa: E402

from bench.stack_load import (  # noqa: E402
    FUNCTIONS,
    SESSION_EVENTS,
    Record,
    Sampler,
    await_arrivals,
    backlog_curve,
    counters,
    delta,
    drive,
    local_stack,
    percentile,
    summary,
    tally,
)
from tests.reliability import harness  # noqa: E402

CONTENTION = ("firestore.aborted", "firestore.resource_exhausted")


# --- the run ----------------------------------------------------------------------------------------


def lone_orders(rs: Any, http: httpx.Client, count: int, pause: float) -> dict[str, Any]:
    """Shopify orders one at a time on an idle stack: each sent once the last is at TikTok and a pause passed."""
    url, settings = rs.stack.url("shopify_webhook") + "/", rs.settings
    sandbox = rs.stack.url("sandbox")
    latencies, answers = [], []
    for _ in range(count + 1):  # the first makes the clients of every function on the path: not counted
        time.sleep(pause)
        order = harness.shopify_order()
        event_id = harness.shopify_purchase_id(settings["SHOPIFY_SHOP_DOMAIN"], order)
        sent = time.time()
        delivery = harness.deliver_like_shopify(http, url, settings, order)
        answers.append((delivery.attempts[0].at - sent) if delivery.delivered else float("nan"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = http.get(f"{sandbox}/sandbox/events", params={"event_id": event_id}, timeout=10).json()["events"]
            if events:
                latencies.append(events[0]["received_at"] - sent)
                break
            time.sleep(0.01)
    latencies, answers = latencies[1:], answers[1:]
    return {"orders": count, "pause_seconds": pause, "arrived": len(latencies), **summary(latencies),
            "webhook_answer_p50_ms": round(statistics.median(answers) * 1000, 1) if answers else None}  # fmt: skip


def run(base_orders: float = 1.0, sessions: float = 1.0, factor: float = 10.0, steady_seconds: float = 30.0,
        spike_seconds: float = 60.0, drain_timeout: float = 240.0, lone: int = 10, lone_pause: float = 1.0
        ) -> dict[str, Any]:  # fmt: skip
    with local_stack(CLAIM_LEASE_SECONDS="60") as rs:
        return _run(rs, base_orders, sessions, factor, steady_seconds, spike_seconds, drain_timeout, lone, lone_pause)


def _run(rs: Any, base_orders: float, sessions: float, factor: float, steady_seconds: float, spike_seconds: float,
         drain_timeout: float, lone: int, lone_pause: float) -> dict[str, Any]:  # fmt: skip
    record, run_id, jobs = Record(), uuid.uuid4().hex[:8], Counter[str]()
    sandbox = rs.stack.url("sandbox")
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
    with httpx.Client(limits=limits) as http, ThreadPoolExecutor(max_workers=400) as pool:
        lone_figures = lone_orders(rs, http, lone, lone_pause)
        httpx.delete(f"{sandbox}/sandbox/events", timeout=30).raise_for_status()
        sampler = Sampler(rs.stack)
        sampler.start()
        phases = [("steady", steady_seconds, 1.0), ("spike", spike_seconds, factor), ("after", steady_seconds, 1.0)]
        bounds: dict[str, tuple[float, float]] = {}
        snapshots = {"start": counters(rs.stack)}
        futures: list[Future[None]] = []
        for name, seconds, scale in phases:
            sampler.phase = name
            began = time.time()
            futures += drive(rs, http, record, pool, name, seconds, base_orders * scale, sessions * scale, jobs, run_id)
            bounds[name] = (began, time.time())
            snapshots[name] = counters(rs.stack)
        sampler.phase = "drain"
        for future in futures:
            future.result()
        # Every job answered: wait until every event it published is at the sandbox.
        await_arrivals(sandbox, record.published, drain_timeout)
        drained_at = time.time()
        snapshots["drain"] = counters(rs.stack)
        sampler.stopping.set()
        sampler.join()
        events = harness.sandbox_events(sandbox)
        requests = harness.sandbox_requests(sandbox)

    expected = set(record.published)
    arrivals = tally(events, expected)
    first, lost, duplicated = arrivals.first, arrivals.lost, arrivals.duplicated
    start, spike_end = bounds["steady"][0], bounds["spike"][1]
    curve = backlog_curve(record.published, first, start, drained_at)
    figures: dict[str, Any] = {}
    steps = ["start", "steady", "spike", "after", "drain"]
    for name in ("steady", "spike", "after"):
        began, ended = bounds[name]
        ids = [e for e, p in record.phase_of.items() if p == name]
        orders = [e for e in ids if e in record.sent_at]
        latencies = [first[e] - record.sent_at[e] for e in orders if e in first]
        window = [n for t, n in curve if began - start <= t <= ended - start]
        metrics = delta(snapshots[steps[steps.index(name) - 1]], snapshots[name])
        figures[name] = {
            "seconds": round(ended - began, 1),
            "answers": {key.split(" ", 1)[1]: dict(c) for key, c in record.answers.items() if key.startswith(name)},
            "orders_published": len(orders),
            "browser_events_accepted": len(ids) - len(orders),
            "events_per_second": round(len(ids) / max(ended - began, 1e-9), 1),
            "webhook_to_sandbox": {"orders": len(latencies), **summary(latencies)},
            "backlog_max": max(window, default=0),
            "backlog_mean": round(statistics.fmean(window), 1) if window else 0,
            "contention": {
                fn: {k: m.get(k, 0) for k in CONTENTION if m.get(k)}
                for fn, m in metrics.items()
                if any(m.get(k) for k in CONTENTION)
            },  # fmt: skip
            "outcomes": {
                fn: {k.removeprefix("outcome."): v for k, v in m.items() if k.startswith("outcome.")}
                for fn, m in metrics.items()
                if fn == "sender"
            },  # fmt: skip
            "firestore_writes": {fn: m.get("firestore.writes", 0) for fn, m in metrics.items()},
            "tiktok_requests": sum(1 for r in requests if began <= r["received_at"] < ended),
            "peak_rss_mib": {fn: round(kib / 1024, 1) for fn, kib in sorted(sampler.peaks.get(name, {}).items())},
        }
    steady_level = max(1, int(percentile([n for t, n in curve if t <= bounds["steady"][1] - start], 0.95) or 0))
    drain_seconds = next((t - (spike_end - start) for t, n in curve if t >= spike_end - start and n <= steady_level),
                         None)  # fmt: skip
    figures["spike"]["drain_seconds"] = None if drain_seconds is None else round(drain_seconds, 1)
    figures["spike"]["drain_to_backlog"] = steady_level
    return {
        "settings": {
            "base_orders_per_second": base_orders,
            "sessions_per_second": sessions,
            "factor": factor,
            "steady_seconds": steady_seconds,
            "spike_seconds": spike_seconds,
            "session_events": SESSION_EVENTS,
            "threads": {fn: rs.stack.function_env(fn)["THREADS"] for fn in FUNCTIONS},
        },  # fmt: skip
        "lone": lone_figures,
        "phases": figures,
        "ratios": ratios(figures),
        "expected": len(expected),
        "lost": len(lost),
        "lost_ids": lost[:10],
        "duplicated": sum(duplicated.values()),
        "duplicated_ids": dict(list(duplicated.items())[:10]),
        "parked_woocommerce": len(record.parked),
        "drain_peak_rss_mib": {fn: round(kib / 1024, 1) for fn, kib in sorted(sampler.peaks.get("drain", {}).items())},
        "backlog_curve": curve,
    }


def ratios(figures: dict[str, Any]) -> dict[str, Any]:
    """The spike's and the after phase's figures over the steady phase's."""

    def over(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 2)

    steady = figures["steady"]
    found = {}
    for name in ("spike", "after"):
        phase = figures[name]
        found[name] = {
            "events_per_second": over(phase["events_per_second"], steady["events_per_second"]),
            "p50": over(phase["webhook_to_sandbox"]["p50_ms"], steady["webhook_to_sandbox"]["p50_ms"]),
            "p99": over(phase["webhook_to_sandbox"]["p99_ms"], steady["webhook_to_sandbox"]["p99_ms"]),
            "backlog_max": over(phase["backlog_max"], steady["backlog_max"]),
            "tiktok_requests_per_second": over(
                phase["tiktok_requests"] / phase["seconds"], steady["tiktok_requests"] / steady["seconds"]
            ),  # fmt: skip
            "peak_rss": {fn: over(mib, steady["peak_rss_mib"].get(fn)) for fn, mib in phase["peak_rss_mib"].items()},
        }
    return found


def format_result(result: dict[str, Any]) -> str:
    s, lone = result["settings"], result["lone"]
    lines = [
        f"lone order (idle stack, one at a time, {lone['pause_seconds']} s apart, {lone['arrived']}/{lone['orders']}): "
        f"webhook -> sandbox p50 {lone['p50_ms']} ms, p99 {lone['p99_ms']} ms "
        f"(webhook answered in {lone['webhook_answer_p50_ms']} ms at p50)",
        f"mix: {s['base_orders_per_second']} orders/s (2/3 Shopify, 1/3 WooCommerce) and "
        f"{s['sessions_per_second']} browser sessions/s of {s['session_events']} events; spike x{s['factor']} for "
        f"{s['spike_seconds']} s between {s['steady_seconds']} s steady phases",
        f"{'phase':8}{'s':>6}{'events/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'backlog':>9}{'tiktok req':>11}"
        f"{'fs writes':>10}  peak RSS MiB",
    ]
    for name in ("steady", "spike", "after"):
        p = result["phases"][name]
        rss = ", ".join(f"{fn} {mib}" for fn, mib in p["peak_rss_mib"].items())
        lines.append(f"{name:8}{p['seconds']:>6}{p['events_per_second']:>10}{p['webhook_to_sandbox']['p50_ms']!s:>10}"
                     f"{p['webhook_to_sandbox']['p99_ms']!s:>10}{p['backlog_max']:>9}{p['tiktok_requests']:>11}"
                     f"{sum(p['firestore_writes'].values()):>10}  {rss}")  # fmt: skip
    for name in ("steady", "spike", "after"):
        p = result["phases"][name]
        answers = "; ".join(f"{ep}: " + ", ".join(f"{k} x{v}" for k, v in sorted(c.items()))
                            for ep, c in sorted(p["answers"].items()))  # fmt: skip
        lines.append(f"{name} answers: {answers}")
        lines.append(f"{name} sender outcomes: {p['outcomes'].get('sender', {})}; contention: {p['contention'] or 0}")
    spike = result["phases"]["spike"]
    lines.append(f"spike backlog drained to the steady level ({spike['drain_to_backlog']} events) "
                 f"{spike['drain_seconds']} s after the spike ended")  # fmt: skip
    r = result["ratios"]["spike"]
    lines.append(f"spike / steady: events/s x{r['events_per_second']}, p50 x{r['p50']}, p99 x{r['p99']}, "
                 f"backlog x{r['backlog_max']}, TikTok requests/s x{r['tiktok_requests_per_second']}, "
                 f"peak RSS {r['peak_rss']}")  # fmt: skip
    lines.append(f"at the sandbox: {result['expected']} expected, lost {result['lost']}, duplicated "
                 f"{result['duplicated']} (WooCommerce parked: {result['parked_woocommerce']})")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spike_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--orders-per-second", type=float, default=1.0, help="steady order rate")
    parser.add_argument("--sessions-per-second", type=float, default=1.0, help="steady browser sessions started/s")
    parser.add_argument("--factor", type=float, default=10.0, help="the spike's multiple of the steady rates")
    parser.add_argument("--steady-seconds", type=float, default=30.0, help="each steady phase, before and after")
    parser.add_argument("--spike-seconds", type=float, default=60.0, help="the spike")
    parser.add_argument("--drain-timeout", type=float, default=240.0, help="longest wait for the backlog to clear")
    parser.add_argument("--lone", type=int, default=10, help="lone orders measured on the idle stack first")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = run(args.orders_per_second, args.sessions_per_second, args.factor, args.steady_seconds,
                 args.spike_seconds, args.drain_timeout, args.lone)  # fmt: skip
    result["seconds"] = round(time.monotonic() - started, 1)
    print(format_result(result))
    print(f"total {result['seconds']} s")
    out = args.json
    if out is None:
        folder = ROOT / "bench" / "results"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"spike-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"figures written to {out}")
    return 1 if result["lost"] or result["duplicated"] else 0


if __name__ == "__main__":
    sys.exit(main())

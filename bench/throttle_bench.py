"""TikTok throttles everyone for minutes at load: what the sender fleet does, and whether anything is lost or dead.

Starts its own emulators, functions and sandbox on free ports (logs in a
temporary LOCAL_RUN_DIR), as ``spike_bench`` does (``bench/stack_load.py``),
and drives the same open-loop mix at ``--rate`` events a second: half orders
(2/3 Shopify with create+paid pairs and twin deliveries, 1/3 WooCommerce),
half browser events (sessions of six events to collect). Phases, the load on
throughout the first three:

1. **steady** (``--steady-seconds``): TikTok answers normally.
2. **throttle** (``--minutes``): the sandbox answers every TikTok request 40100
   ("too many requests"; its ``throttle`` fault at a rate of 1).
3. **after** (``--after-seconds``): the throttle lifted.
4. **drain**: no more load, until every accepted event is at the sandbox
   (or ``--drain-timeout``), then five quiet seconds for late copies.

Per phase: events offered and accepted by the receivers; TikTok requests per
minute (total and throttled, from the sandbox's request log; the throttle's
minute by minute too); the sender's outcomes and its throttle counters
(``GET /metrics`` deltas: ``throttle.requeued`` is a push held at the closed
gate past ``SENDER_THROTTLE_HOLD_SECONDS``, re-published and acknowledged);
dead letters (Firestore ``dead_events`` records and messages on the
dead-letter subscription, pulled at each phase's end). After the throttle
lifts: how long until the backlog (accepted, not yet at the sandbox) is back
at its steady level, and until the last event accepted before the lift is at
the sandbox. At the end: lost and duplicated events at the sandbox (must be 0
and 0).

There is no "before" run with the gate disabled: the sender always has its
gate (``shared/send/throttle.py``) and nothing turns it off.

Not in ``make bench``'s default set (about 6 minutes at the defaults on 2 cores):
``make bench BENCH_ARGS=throttle`` or ``python -m bench.throttle_bench [--minutes 3 --rate 20]``.
"""

from __future__ import annotations

import argparse
import json
import math
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
os.environ["LOCAL_RUN_DIR"] = tempfile.mkdtemp(prefix="throttle-bench-")

import httpx  # noqa: E402

from bench.stack_load import (  # noqa: E402
    SESSION_EVENTS,
    Record,
    _schedule,
    await_arrivals,
    backlog_curve,
    counters,
    delta,
    drive,
    local_stack,
    percentile,
    tally,
)
from tests.reliability import harness  # noqa: E402

ORDER_SHARE = 0.5  # of the events offered; the rest are browser events
PHASES = ("steady", "throttle", "after", "drain")
THROTTLE_FAULTS = {"error_rate": 1.0, "throttle": 1}


class DeadLetters:
    """Messages on the stack's dead-letter subscription (pulled and acknowledged: nothing else reads it here)."""

    def __init__(self, subscription: str) -> None:
        from google.cloud import pubsub_v1

        self.subscription = subscription
        self.subscriber = pubsub_v1.SubscriberClient()
        self.event_ids: list[str] = []

    def pull(self) -> int:
        """Pull what arrived since the last call; how many messages in all so far."""
        from google.api_core import exceptions as gexc

        from shared.send.decode import envelope_ids

        while True:
            try:
                response = self.subscriber.pull(request={"subscription": self.subscription, "max_messages": 500},
                                                timeout=3)  # fmt: skip
            except gexc.DeadlineExceeded:
                break
            if not response.received_messages:
                break
            for received in response.received_messages:
                self.event_ids.append(envelope_ids(received.message.data).get("event_id") or "?")
            ack_ids = [m.ack_id for m in response.received_messages]
            self.subscriber.acknowledge(request={"subscription": self.subscription, "ack_ids": ack_ids})
        return len(self.event_ids)


def dead_records(rs: Any) -> int:
    """Dead records in the stack's Firestore ``dead_events`` collection."""
    from shared.infra.store import DEAD_EVENTS, Store, make_client

    store = Store(make_client(rs.settings["GOOGLE_CLOUD_PROJECT"]), rs.settings["FIRESTORE_COLLECTION_PREFIX"])
    return sum(1 for _, data in store.live_documents(DEAD_EVENTS) if data.get("state") == "dead")


def offered(rate: float, seconds: float) -> int:
    """Events ``drive`` offers in ``seconds`` at ``rate`` (every order one event, every session six)."""
    orders = rate * ORDER_SHARE
    sessions = rate * (1 - ORDER_SHARE) / SESSION_EVENTS
    return (len(_schedule(orders * 2 / 3, seconds)) + len(_schedule(orders / 3, seconds))
            + SESSION_EVENTS * len(_schedule(sessions, seconds)))  # fmt: skip


def set_throttle(sandbox: str, on: bool) -> None:
    if on:
        httpx.post(f"{sandbox}/sandbox/faults", json=THROTTLE_FAULTS, timeout=10).raise_for_status()
    else:
        httpx.delete(f"{sandbox}/sandbox/faults", timeout=10).raise_for_status()


def run(minutes: float = 3.0, rate: float = 20.0, steady_seconds: float = 30.0, after_seconds: float = 30.0,
        drain_timeout: float = 150.0) -> dict[str, Any]:  # fmt: skip
    with local_stack(CLAIM_LEASE_SECONDS="60") as rs:
        try:
            return _run(rs, minutes, rate, steady_seconds, after_seconds, drain_timeout)
        finally:
            set_throttle(rs.stack.url("sandbox"), False)


def _run(rs: Any, minutes: float, rate: float, steady_seconds: float, after_seconds: float, drain_timeout: float
         ) -> dict[str, Any]:  # fmt: skip
    record, run_id, jobs = Record(), uuid.uuid4().hex[:8], Counter[str]()
    sandbox = rs.stack.url("sandbox")
    dead_letters = DeadLetters(rs.topology["dead_letter_subscription"])
    orders, sessions = rate * ORDER_SHARE, rate * (1 - ORDER_SHARE) / SESSION_EVENTS
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
    snapshots = {"start": (counters(rs.stack), dead_records(rs), dead_letters.pull())}
    bounds: dict[str, tuple[float, float]] = {}
    load = [("steady", steady_seconds), ("throttle", minutes * 60), ("after", after_seconds)]
    with httpx.Client(limits=limits) as http, ThreadPoolExecutor(max_workers=400) as pool:
        futures: list[Future[None]] = []
        for name, seconds in load:
            if name == "throttle":
                set_throttle(sandbox, True)
            began = time.time()
            futures += drive(rs, http, record, pool, name, seconds, orders, sessions, jobs, run_id, tag="throttle")
            if name == "throttle":
                set_throttle(sandbox, False)
            bounds[name] = (began, time.time())
            snapshots[name] = (counters(rs.stack), dead_records(rs), dead_letters.pull())
        began = time.time()
        for future in futures:
            future.result()
        # Every job answered: wait until every event it accepted is at the sandbox.
        await_arrivals(sandbox, record.published, drain_timeout)
        bounds["drain"] = (began, time.time())
        snapshots["drain"] = (counters(rs.stack), dead_records(rs), dead_letters.pull())
        events = harness.sandbox_events(sandbox)
        requests = harness.sandbox_requests(sandbox)

    expected = set(record.published)
    arrivals = tally(events, expected)
    first, lost, duplicated = arrivals.first, arrivals.lost, arrivals.duplicated
    start, lifted = bounds["steady"][0], bounds["throttle"][1]
    curve = backlog_curve(record.published, first, start, bounds["drain"][1], step=1.0)
    steps = ["start", *PHASES]
    figures: dict[str, Any] = {}
    for name in PHASES:
        began, ended = bounds[name]
        before, after = snapshots[steps[steps.index(name) - 1]], snapshots[name]
        sender = delta(before[0], after[0]).get("sender", {})
        seen = [r for r in requests if began <= r["received_at"] < ended]
        throttled = [r for r in seen if r.get("fault") == "throttle"]
        window = [n for t, n in curve if began - start <= t <= ended - start]
        per_minute = 60 / max(ended - began, 1e-9)
        figures[name] = {
            "seconds": round(ended - began, 1),
            "events_offered": offered(rate, dict(load)[name]) if name in dict(load) else 0,
            "events_accepted": sum(1 for p in record.phase_of.values() if p == name),
            "answers": {key.split(" ", 1)[1]: dict(c) for key, c in record.answers.items() if key.startswith(name)},
            "tiktok_requests": len(seen),
            "tiktok_throttled": len(throttled),
            "tiktok_requests_per_minute": round(len(seen) * per_minute, 1),
            "tiktok_throttled_per_minute": round(len(throttled) * per_minute, 1),
            "sender_outcomes": {k.removeprefix("outcome."): v for k, v in sender.items() if k.startswith("outcome.")},
            "sender_throttle": {k.removeprefix("throttle."): v for k, v in sender.items() if k.startswith("throttle.")},
            "dead_records": after[1] - before[1],
            "dead_letters": after[2] - before[2],
            "backlog_max": max(window, default=0),
            "backlog_mean": round(statistics.fmean(window), 1) if window else 0,
        }
    throttle_began = bounds["throttle"][0]
    figures["throttle"]["by_minute"] = [
        {"minute": m + 1,
         "tiktok_requests": sum(1 for r in requests if 0 <= r["received_at"] - throttle_began - 60 * m < 60
                                and r["received_at"] < lifted),
         "tiktok_throttled": sum(1 for r in requests if 0 <= r["received_at"] - throttle_began - 60 * m < 60
                                 and r["received_at"] < lifted and r.get("fault") == "throttle")}
        for m in range(max(1, math.ceil((lifted - throttle_began - 1) / 60)))  # a tail under a second is no minute
    ]  # fmt: skip
    steady_level = max(1, int(percentile([n for t, n in curve if t <= bounds["steady"][1] - start], 0.95) or 0))
    drain_seconds = next((t - (lifted - start) for t, n in curve if t >= lifted - start and n <= steady_level), None)
    before_lift = [e for e, p in record.phase_of.items() if p in ("steady", "throttle")]
    last_arrival = max((first[e] for e in before_lift if e in first), default=None)
    return {
        "settings": {
            "minutes": minutes,
            "events_per_second": rate,
            "orders_per_second": orders,
            "sessions_per_second": round(sessions, 3),
            "session_events": SESSION_EVENTS,
            "steady_seconds": steady_seconds,
            "after_seconds": after_seconds,
            "drain_timeout": drain_timeout,
            "faults": THROTTLE_FAULTS,
            "sender_threads": rs.stack.function_env("sender")["THREADS"],
        },
        "phases": figures,
        "steady_backlog": steady_level,
        "drain_seconds": None if drain_seconds is None else round(drain_seconds, 1),
        "last_throttled_event_seconds": None if last_arrival is None else round(last_arrival - lifted, 1),
        "dead_records": snapshots["drain"][1],
        "dead_letters": snapshots["drain"][2],
        "dead_letter_ids": dead_letters.event_ids[:10],
        "expected": len(expected),
        "lost": len(lost),
        "lost_ids": lost[:10],
        "duplicated": sum(duplicated.values()),
        "duplicated_ids": dict(list(duplicated.items())[:10]),
        "parked_woocommerce": len(record.parked),
        "backlog_curve": curve,
    }


def format_result(result: dict[str, Any]) -> str:
    s, phases = result["settings"], result["phases"]
    lines = [
        f"load: {s['events_per_second']} events/s ({s['orders_per_second']} orders/s, 2/3 Shopify, 1/3 WooCommerce; "
        f"{s['sessions_per_second']} browser sessions/s of {s['session_events']} events); every TikTok request "
        f"answered 40100 for {s['minutes']} min between {s['steady_seconds']} s steady and {s['after_seconds']} s "
        f"after; sender THREADS {s['sender_threads']}",
        f"{'phase':9}{'s':>7}{'offered':>9}{'accepted':>9}{'tiktok/min':>11}{'throttled/min':>14}{'sent':>7}"
        f"{'retry':>7}{'requeued':>9}{'dead':>6}{'dead rec':>9}{'dead letters':>13}{'backlog':>9}",
    ]
    for name in PHASES:
        p = phases[name]
        o, t = p["sender_outcomes"], p["sender_throttle"]
        lines.append(f"{name:9}{p['seconds']:>7}{p['events_offered']:>9}{p['events_accepted']:>9}"
                     f"{p['tiktok_requests_per_minute']:>11}{p['tiktok_throttled_per_minute']:>14}"
                     f"{o.get('sent', 0):>7}{o.get('retry', 0):>7}{t.get('requeued', 0):>9}{o.get('dead', 0):>6}"
                     f"{p['dead_records']:>9}{p['dead_letters']:>13}{p['backlog_max']:>9}")  # fmt: skip
    minutes = ", ".join(f"{m['tiktok_requests']} ({m['tiktok_throttled']} throttled)"
                        for m in phases["throttle"]["by_minute"])  # fmt: skip
    lines.append(f"TikTok requests in each minute of the throttle: {minutes}; "
                 f"{phases['throttle']['tiktok_requests']} in all")  # fmt: skip
    for name in PHASES:
        p = phases[name]
        answers = "; ".join(f"{ep}: " + ", ".join(f"{k} x{v}" for k, v in sorted(c.items()))
                            for ep, c in sorted(p["answers"].items()))  # fmt: skip
        lines.append(f"{name}: sender outcomes {p['sender_outcomes']}, throttle {p['sender_throttle']}"
                     + (f"; answers: {answers}" if answers else ""))  # fmt: skip
    lines.append(f"after the throttle lifted: backlog (max {phases['throttle']['backlog_max']}) back to the steady "
                 f"level ({result['steady_backlog']} events) in {result['drain_seconds']} s; the last event accepted "
                 f"before the lift at the sandbox {result['last_throttled_event_seconds']} s after it")  # fmt: skip
    lines.append(f"dead: {result['dead_records']} Firestore dead records, {result['dead_letters']} dead letters")
    lines.append(f"at the sandbox: {result['expected']} expected, lost {result['lost']}, duplicated "
                 f"{result['duplicated']} (WooCommerce parked: {result['parked_woocommerce']})")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throttle_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long TikTok answers every request 40100")
    parser.add_argument("--rate", type=float, default=20.0, help="events offered per second (half orders)")
    parser.add_argument("--steady-seconds", type=float, default=30.0, help="load before the throttle")
    parser.add_argument("--after-seconds", type=float, default=30.0, help="load after the throttle lifts")
    parser.add_argument("--drain-timeout", type=float, default=150.0, help="longest wait for the backlog to clear")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = run(args.minutes, args.rate, args.steady_seconds, args.after_seconds, args.drain_timeout)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(format_result(result))
    print(f"total {result['seconds']} s")
    out = args.json
    if out is None:
        folder = ROOT / "bench" / "results"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"throttle-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"figures written to {out}")
    failed = result["lost"] or result["duplicated"] or result["dead_records"] or result["dead_letters"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

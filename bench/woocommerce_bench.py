"""WooCommerce webhook benchmark through the local stack (emulators, functions, TikTok sandbox).

Starts a private stack on free ports (the pieces ``make run`` uses) and sends
signed ``order.updated`` deliveries of distinct paid orders whose checkout
snippet recorded consent (``_tt_consent``) and a click id, so each request
takes the full path: HMAC, mapping, click-context read, Pub/Sub publish (the
receiver claims nothing: the sender's claim on the event_id dedups). Printed:

- response time of the webhook, one delivery at a time (WooCommerce waits up
  to 60 s and never retries): p50, p99, max;
- the same deliveries again (answered ``published`` again, the sender answers the
  copy "duplicate": what later ``order.updated`` deliveries of a paid order cost);
- ``concurrency`` parallel senders: p50, p99, deliveries per second;
- webhook-to-sandbox latency (delivery sent -> TikTok event received by the
  sandbox, through Pub/Sub push and the sender), for both phases.

The load is a fixed number of requests; it stops by itself.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import httpx  # noqa: E402
import localstack  # noqa: E402

from bench import procstat  # noqa: E402

SITE_URL = localstack.DEV_SETTINGS["WOOCOMMERCE_SITE_URL"]
SECRET = localstack.DEV_SETTINGS["WOOCOMMERCE_WEBHOOK_SECRET"]
FIXTURE = ROOT / "tests" / "fixtures" / "woocommerce" / "order_727_processing_documented.json"


class Delivery:
    """One signed delivery of a distinct paid order."""

    def __init__(self, template: dict[str, Any], order_id: int) -> None:
        order = copy.deepcopy(template)
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        order.update(id=order_id, order_key=f"wc_order_{uuid.uuid4().hex[:13]}", date_paid_gmt=now,
                     date_created_gmt=now, customer_ip_address="203.0.113.24",
                     customer_user_agent="Mozilla/5.0 (bench)")  # fmt: skip
        order["meta_data"] = [{"id": 1, "key": "_tt_consent", "value": "granted"},
                              {"id": 2, "key": "_ttclid", "value": f"E.C.P.bench-{order_id}"}]  # fmt: skip
        self.body = json.dumps(order).encode()
        self.event_id = f"woocommerce:{SITE_URL.split('://')[1]}:order:{order_id}:Purchase"
        digest = hmac.new(SECRET.encode(), self.body, hashlib.sha256).digest()
        self.headers = {
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": SITE_URL + "/",
            "X-WC-Webhook-Topic": "order.updated",
            "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": "updated",
            "X-WC-Webhook-ID": "1",
            "X-WC-Webhook-Signature": base64.b64encode(digest).decode(),
        }
        self.sent_at = 0.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(percentile(ms, 0.5), 1), "p99_ms": round(percentile(ms, 0.99), 1),
            "max_ms": round(max(ms), 1) if ms else float("nan")}  # fmt: skip


def send_all(url: str, deliveries: list[Delivery], concurrency: int) -> dict[str, Any]:
    """POST every delivery; response times, outcomes and wall time."""
    times: list[float] = []
    outcomes: dict[str, int] = {}

    def post(client: httpx.Client, delivery: Delivery) -> None:
        delivery.sent_at = delivery.sent_at or time.time()  # the first send is the one that publishes
        started = time.perf_counter()
        response = client.post(url, content=delivery.body, headers={**delivery.headers,
                               "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex})  # fmt: skip
        times.append(time.perf_counter() - started)
        kind = response.json().get("outcome", "?") if response.status_code < 500 else f"http_{response.status_code}"
        outcomes[kind] = outcomes.get(kind, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=70, limits=limits) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(lambda d: post(client, d), deliveries))
        wall = time.perf_counter() - started
    return {"times": times, "outcomes": outcomes, "wall": wall}


def sandbox_latencies(sandbox_url: str, deliveries: list[Delivery], timeout: float = 120) -> list[float]:
    """Seconds from sending each delivery to the sandbox receiving its event (missing ones left out)."""
    wanted = {d.event_id: d.sent_at for d in deliveries}
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=30) as client:
        while len(found) < len(wanted) and time.monotonic() < deadline:
            for event in client.get(f"{sandbox_url}/sandbox/events").json()["events"]:
                if event["event_id"] in wanted:
                    found.setdefault(event["event_id"], event["received_at"] - wanted[event["event_id"]])
            time.sleep(0.2)
    return list(found.values())


def run(sequential: int = 100, concurrent: int = 400, concurrency: int = 16, warmup: int = 20) -> dict[str, Any]:
    """Start a private stack, measure, stop it; the numbers main() prints."""
    emulators = localstack.Emulators("bench-woo", localstack.free_port(), localstack.free_port())
    settings = {**localstack.DEV_SETTINGS, **emulators.env, "LOG_LEVEL": "WARNING",
                "PUBSUB_TOPIC": f"bench-{uuid.uuid4().hex[:8]}",
                "FIRESTORE_COLLECTION_PREFIX": f"bench{uuid.uuid4().hex[:8]}_"}  # fmt: skip
    stack = localstack.Stack(settings, {n: localstack.free_port() for n in (*localstack.FUNCTIONS, "sandbox")})
    saved = {k: os.environ.get(k) for k in emulators.env}
    template = json.loads(FIXTURE.read_text())
    ids = iter(range(int(time.time()) * 1000, 2**62))
    try:
        emulators.start()
        os.environ.update(emulators.env)
        localstack.create_topology(emulators.project, settings["PUBSUB_TOPIC"], stack.url("sender") + "/")
        stack.start()
        url = stack.url("woocommerce_webhook") + "/"
        # The very first delivery makes the Firestore and Pub/Sub clients (imported on first use).
        cold = send_all(url, [Delivery(template, next(ids))], 1)
        send_all(url, [Delivery(template, next(ids)) for _ in range(warmup)], 4)
        one_by_one = [Delivery(template, next(ids)) for _ in range(sequential)]
        first = send_all(url, one_by_one, 1)
        again = send_all(url, one_by_one, 1)  # published again; the sender drops each copy as a duplicate
        loaded = [Delivery(template, next(ids)) for _ in range(concurrent)]
        with procstat.Meter(stack.processes["woocommerce_webhook"].pid, url) as meter:
            busy = send_all(url, loaded, concurrency)
        return {
            "sequential": {"requests": sequential, **summary(first["times"]), "outcomes": first["outcomes"]},
            "sequential_duplicates": {"requests": sequential, **summary(again["times"]),
                                      "outcomes": again["outcomes"]},
            "concurrent": {"requests": concurrent, "concurrency": concurrency, **summary(busy["times"]),
                           "per_second": round(concurrent / busy["wall"], 1), "outcomes": busy["outcomes"],
                           "per_request": meter.per(concurrent)},
            "webhook_to_sandbox": {"expected": sequential,
                                   **_with_count(sandbox_latencies(stack.url("sandbox"), one_by_one))},
            "webhook_to_sandbox_under_load": {"expected": concurrent,
                                              **_with_count(sandbox_latencies(stack.url("sandbox"), loaded))},
            "first_delivery_ms": round(cold["times"][0] * 1000, 1),
            "first_delivery_outcomes": cold["outcomes"],
            "webhook_threads": int(stack.function_env("woocommerce_webhook")["THREADS"]),
        }  # fmt: skip
    finally:
        stack.stop()
        emulators.stop()
        localstack.restore_environ(saved)


def _with_count(latencies: list[float]) -> dict[str, Any]:
    return {"events": len(latencies), **summary(latencies)}


def print_report(results: dict[str, Any]) -> None:
    print("\nWooCommerce webhook through the local stack")
    rows = [
        ("response, one at a time", results["sequential"]),
        ("response, same order again", results["sequential_duplicates"]),
        (f"response, {results['concurrent']['concurrency']} in parallel", results["concurrent"]),
        ("webhook -> sandbox, one at a time", results["webhook_to_sandbox"]),
        ("webhook -> sandbox, under load", results["webhook_to_sandbox_under_load"]),
    ]
    for label, row in rows:
        extra = f"  {row['per_second']} deliveries/s" if "per_second" in row else ""
        if "events" in row:
            extra = f"  {row['events']}/{row['expected']} events"
        print(
            f"  {label:36} p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms  max {row['max_ms']:8.1f} ms{extra}"
        )
    print(f"  per request in parallel: {procstat.describe(results['concurrent']['per_request'])}")
    print(f"  first delivery after start (clients made on first use): {results['first_delivery_ms']} ms "
          f"{results['first_delivery_outcomes']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=100, help="deliveries sent one at a time")
    parser.add_argument("--concurrent", type=int, default=400, help="deliveries sent in parallel")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel senders")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args.sequential, args.concurrent, args.concurrency)
    print_report(results)
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shopify webhook benchmark through the local stack (emulators, functions, TikTok sandbox).

Starts its own stack on free ports (the same pieces ``make run`` uses), then
sends signed ``orders/paid`` deliveries of distinct, consented orders, so every
request takes the full path: HMAC, mapping, click-context read, Pub/Sub
publish (the webhook claims nothing; the order's one claim is the sender's,
on the event_id). It prints:

- the webhook's response time, one delivery at a time (what a single Shopify
  delivery waits, against its 5 s limit): p50, p99, max;
- under ``concurrency`` parallel senders: p50, p99 and requests per second;
- webhook-to-sandbox latency (from sending the delivery to the sandbox receiving
  the TikTok event, through Pub/Sub push and the sender): p50, p99, for the
  one-at-a-time deliveries and for those sent under load;
- the same latency through Shopify's other delivery method, Pub/Sub: from
  publishing the order, as Shopify does, on the Shopify delivery topic to the
  sandbox receiving its event (push to the ``shopify_pubsub`` entry point, then
  the same path), one message at a time.

The load is bounded (a fixed number of requests) and stops by itself.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import statistics
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
from shared.config import DEFAULT_SHOPIFY_API_VERSION  # noqa: E402
from shared.receive.orders import JOIN_SHOPIFY_CHECKOUT  # noqa: E402

SHOP = localstack.DEV_SETTINGS["SHOPIFY_SHOP_DOMAIN"]
SECRET = localstack.DEV_SETTINGS["SHOPIFY_WEBHOOK_SECRET"]
PIXEL = localstack.DEV_SETTINGS["TIKTOK_PIXEL_CODE"]
FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_create_2026-04_documented.json"


def _signature(body: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _order_template() -> dict[str, Any]:
    order = json.loads(FIXTURE.read_text())["response"]
    order.update(test=False, cancelled_at=None, cancel_reason=None, financial_status="paid",
                 browser_ip="203.0.113.24", phone="+1 (213) 373-4253")  # fmt: skip
    # Recent times: the webhook refuses order bodies older than SHOPIFY_MAX_ORDER_AGE_DAYS as replays.
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    order.update(created_at=now, processed_at=now, updated_at=now)
    return order


def _delivery(template: dict[str, Any], number: int) -> tuple[str, bytes, dict[str, str], str]:
    """(checkout token, body, headers, event_id) of one distinct order."""
    order_id = 7_000_000_000_000_000_000 + number * 1_000 + int(uuid.uuid4().int % 1_000)
    token = f"bench-{uuid.uuid4().hex}"
    body = json.dumps({**template, "id": order_id, "checkout_token": token}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Hmac-Sha256": _signature(body),
    }
    return token, body, headers, f"shopify:{SHOP}:order:{order_id}:Purchase"


def _grant_all(store: Any, tokens: list[str]) -> None:
    """What the collect endpoint stores for consenting shoppers, in batches."""
    context = {"consent": {"marketing_allowed": True, "sale_of_data_allowed": True}, "ttp": "bench.ttp"}
    for start in range(0, len(tokens), 200):
        keys = [(JOIN_SHOPIFY_CHECKOUT, t) for t in tokens[start : start + 200]]
        store.put_click_context(PIXEL, keys, context, dt.timedelta(hours=1))


def _send(url: str, deliveries: list[tuple[str, bytes, dict[str, str], str]], concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    failures: dict[str, int] = {}

    def one(client: httpx.Client, delivery: tuple[str, bytes, dict[str, str], str]) -> None:
        _, body, headers, event_id = delivery
        sent_at[event_id] = time.time()
        started = time.perf_counter()
        response = client.post(url, content=body, headers=headers)
        latencies.append(time.perf_counter() - started)
        outcome = response.json().get("outcome") if response.status_code == 200 else str(response.status_code)
        if outcome != "published":
            failures[str(outcome)] = failures.get(str(outcome), 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=30, limits=limits) as client:
        started = time.perf_counter()
        if concurrency == 1:
            for delivery in deliveries:
                one(client, delivery)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(lambda d: one(client, d), deliveries))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "sent_at": sent_at, "elapsed": elapsed, "failures": failures}


def _publish(topic_path: str, deliveries: list[tuple[str, bytes, dict[str, str], str]]) -> dict[str, float]:
    """Publish each delivery as Shopify does (headers as attributes, no HMAC), one at a time."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    sent_at: dict[str, float] = {}
    for _, body, headers, event_id in deliveries:
        attributes = {k: v for k, v in headers.items() if k not in ("Content-Type", "X-Shopify-Hmac-Sha256")}
        attributes["X-Shopify-Event-Id"] = str(uuid.uuid4())
        attributes["X-Shopify-Triggered-At"] = dt.datetime.now(dt.timezone.utc).isoformat()
        sent_at[event_id] = time.time()
        publisher.publish(topic_path, body, **attributes).result(timeout=30)
    return sent_at


def _sandbox_latencies(sandbox_url: str, sent_at: dict[str, float], timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            for event in client.get(f"{sandbox_url}/sandbox/events").json()["events"]:
                if event["event_id"] in sent_at and event["event_id"] not in found:
                    found[event["event_id"]] = event["received_at"] - sent_at[event["event_id"]]
            if len(found) >= len(sent_at):
                break
            time.sleep(0.5)
    return list(found.values())


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1) if latencies else float("nan"),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else float("nan"),
    }


def run(
    requests: int = 400, concurrency: int = 16, sequential: int = 100, warmup: int = 20, pubsub: int = 100
) -> dict[str, Any]:
    """Start a stack, measure, stop it. Returns the numbers (also what :func:`main` prints)."""
    emulators = localstack.Emulators("bench-project", localstack.free_port(), localstack.free_port())
    settings = {
        **localstack.DEV_SETTINGS,
        "GOOGLE_CLOUD_PROJECT": emulators.project,
        "PUBSUB_TOPIC": f"bench-{uuid.uuid4().hex[:8]}",
        "FIRESTORE_COLLECTION_PREFIX": f"bench{uuid.uuid4().hex[:8]}_",
        "LOG_LEVEL": "WARNING",
        **emulators.env,
    }
    ports = {name: localstack.free_port() for name in (*localstack.FUNCTIONS, "sandbox")}
    stack = localstack.Stack(settings=settings, ports=ports)
    saved_env = {k: os.environ.get(k) for k in emulators.env}
    try:
        emulators.start()
        os.environ.update(emulators.env)
        localstack.create_topology(emulators.project, settings["PUBSUB_TOPIC"], stack.url("sender") + "/")
        stack.start()
        from shared.infra.store import Store, make_client

        store = Store(make_client(emulators.project), prefix=settings["FIRESTORE_COLLECTION_PREFIX"])
        template = _order_template()
        shopify_topic = localstack.create_shopify_topology(
            emulators.project, f"bench-shopify-{uuid.uuid4().hex[:8]}", stack.url("shopify_pubsub") + "/"
        )["topic"]
        phases = {"warmup": warmup, "sequential": sequential, "concurrent": requests, "pubsub_warmup": 5,
                  "pubsub": pubsub}  # fmt: skip
        deliveries = {
            name: [_delivery(template, n) for n in range(offset, offset + count)]
            for offset, (name, count) in zip((0, 10**6, 2 * 10**6, 3 * 10**6, 4 * 10**6), phases.items(), strict=True)
        }
        _grant_all(store, [d[0] for batch in deliveries.values() for d in batch])
        url = stack.url("shopify_webhook") + "/"
        # The very first delivery makes the Firestore and Pub/Sub clients (imported on first use).
        first = _send(url, deliveries["warmup"][:1], 1)
        _send(url, deliveries["warmup"][1:], 4)
        one_at_a_time = _send(url, deliveries["sequential"], 1)
        with procstat.Meter(stack.processes["shopify_webhook"].pid, url) as meter:
            loaded = _send(url, deliveries["concurrent"], concurrency)
        quiet = _sandbox_latencies(stack.url("sandbox"), one_at_a_time["sent_at"], timeout=120)
        busy = _sandbox_latencies(stack.url("sandbox"), loaded["sent_at"], timeout=120)
        # The first pushes make the Pub/Sub entry point's clients; then one message at a time.
        _sandbox_latencies(stack.url("sandbox"), _publish(shopify_topic, deliveries["pubsub_warmup"]), timeout=60)
        via_pubsub = _sandbox_latencies(stack.url("sandbox"), _publish(shopify_topic, deliveries["pubsub"]), 120)
        return {
            "sequential": {"requests": sequential, **_summary(one_at_a_time["latencies"]),
                           "not_published": one_at_a_time["failures"]},
            "concurrent": {"requests": requests, "concurrency": concurrency, **_summary(loaded["latencies"]),
                           "requests_per_second": round(requests / loaded["elapsed"], 1),
                           "not_published": loaded["failures"], "per_request": meter.per(requests)},
            "webhook_to_sandbox": {"events": len(quiet), "expected": sequential, **_summary(quiet)},
            "webhook_to_sandbox_under_load": {"events": len(busy), "expected": requests, **_summary(busy)},
            "pubsub_to_sandbox": {"events": len(via_pubsub), "expected": pubsub, **_summary(via_pubsub)},
            "first_delivery_ms": round(first["latencies"][0] * 1000, 1),
            "webhook_threads": int(stack.function_env("shopify_webhook")["THREADS"]),
        }  # fmt: skip
    finally:
        stack.stop()
        emulators.stop()
        localstack.restore_environ(saved_env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="deliveries in the concurrent phase")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel senders in the concurrent phase")
    parser.add_argument("--sequential", type=int, default=100, help="deliveries sent one at a time")
    parser.add_argument("--pubsub", type=int, default=100, help="messages published one at a time on the Shopify topic")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = run(requests=args.requests, concurrency=args.concurrency, sequential=args.sequential, pubsub=args.pubsub)
    seq, conc = result["sequential"], result["concurrent"]
    e2e, e2e_busy = result["webhook_to_sandbox"], result["webhook_to_sandbox_under_load"]
    print(f"shopify_webhook, first delivery after start (clients made on first use): "
          f"{result['first_delivery_ms']} ms (Shopify waits 5000)")  # fmt: skip
    print(f"shopify_webhook, one at a time ({seq['requests']}): p50 {seq['p50_ms']} ms, p99 {seq['p99_ms']} ms, "
          f"max {seq['max_ms']} ms")  # fmt: skip
    print(f"shopify_webhook, {conc['concurrency']} concurrent ({conc['requests']}): p50 {conc['p50_ms']} ms, "
          f"p99 {conc['p99_ms']} ms, {conc['requests_per_second']} requests/s "
          f"({result['webhook_threads']} threads, one instance)")  # fmt: skip
    print(f"  per request: {procstat.describe(conc['per_request'])}")
    print(f"webhook -> sandbox, one at a time ({e2e['events']}/{e2e['expected']} events): p50 {e2e['p50_ms']} ms, "
          f"p99 {e2e['p99_ms']} ms")  # fmt: skip
    print(f"webhook -> sandbox, under load ({e2e_busy['events']}/{e2e_busy['expected']} events): "
          f"p50 {e2e_busy['p50_ms']} ms, p99 {e2e_busy['p99_ms']} ms")  # fmt: skip
    via_pubsub = result["pubsub_to_sandbox"]
    print(f"Shopify topic -> sandbox over Pub/Sub, one at a time ({via_pubsub['events']}/{via_pubsub['expected']} "
          f"events): p50 {via_pubsub['p50_ms']} ms, p99 {via_pubsub['p99_ms']} ms")  # fmt: skip
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sender benchmark: events/s, TikTok requests per event and Firestore operations per event.

Bounded, self-stopping load (not a test): for each offered concurrency, N
distinct raw Pub/Sub push bodies are POSTed straight to the sender's HTTP
endpoint, each worker waiting for its answer before sending the next. Figures
come from the sender's own counters (``GET /metrics``: Firestore RPCs and
document reads/writes/deletes, TikTok requests) and from the sandbox's request
log (``GET /sandbox/requests``), as differences around each run.

By default it starts its own emulators and stack on free ports (the sandbox
standing in for TikTok, the sender with ``THREADS=80`` as deployed), once with batching on
(``SENDER_BATCH_WAIT_MS=50``) and once with it off (``SENDER_BATCH_WAIT_MS=0``).
With ``--sender-url`` and ``--sandbox-url`` it measures a running stack as it is
configured. Usage::

    python -m bench.sender_bench [--concurrency 1,8,32,64,128] [--scale 1.0] [--modes on,off] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import procstat  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONCURRENCY = (1, 8, 32, 64, 128)
MODES = {"on": {"SENDER_BATCH_WAIT_MS": "50"}, "off": {"SENDER_BATCH_WAIT_MS": "0"}}
EMAIL_HASH = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"


def events_for(concurrency: int, batching: bool, scale: float) -> int:
    """How many events a level sends: enough to fill batches, small enough to stay bounded."""
    base = 60 if concurrency == 1 else min(25 * concurrency, 1600)
    if concurrency == 1 and not batching:
        base = 150
    return max(10, int(base * scale))


def push_bodies(count: int, pixel_code: str) -> list[bytes]:
    """Distinct envelopes as the push subscription would POST them (hashed identifiers only)."""
    now = int(time.time())
    bodies = []
    run = uuid.uuid4().hex[:8]
    for index in range(count):
        envelope = {
            "source": "shopify",
            "pixel_code": pixel_code,
            "event": "Purchase",
            "event_id": f"bench:{run}:{index}",
            "event_time": now - 60,
            "user": {"email": [EMAIL_HASH], "ip": "203.0.113.24", "ttclid": "E.C.P.bench"},
            "properties": {"currency": "USD", "value": 19.9, "order_id": str(index)},
            "consent": "granted",
        }
        message = {
            "data": base64.b64encode(json.dumps(envelope).encode()).decode(),
            "messageId": f"{run}-{index}",
            "attributes": {"pixel_code": pixel_code, "event": "Purchase", "source": "shopify"},
            "publishTime": "2026-01-01T00:00:00Z",
        }
        bodies.append(json.dumps({"message": message, "subscription": "projects/bench/subscriptions/bench"}).encode())
    return bodies


def _drive(sender_url: str, bodies: Sequence[bytes], concurrency: int) -> tuple[float, list[float], int]:
    """POST every body with ``concurrency`` workers; (seconds, latencies in ms, failures)."""
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()
    latencies: list[float] = []
    failures = 0

    def worker(client: httpx.Client) -> None:
        nonlocal failures
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            started = time.perf_counter()
            try:
                status = client.post(sender_url + "/", content=bodies[index]).status_code
            except httpx.HTTPError:
                status = 0
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                failures += status != 200

    # Built before the clock starts: each takes ~25 ms of CPU (its SSL context), so 128 built by
    # their workers would starve the first second of the load (and the sender's batches) of requests.
    clients = [httpx.Client(timeout=120, headers={"Content-Type": "application/json"}) for _ in range(concurrency)]
    threads = [threading.Thread(target=worker, args=(client,), daemon=True) for client in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for client in clients:
        client.close()
    return seconds, latencies, failures


def _counters(sender_url: str) -> dict[str, Any]:
    return httpx.get(sender_url + "/metrics", timeout=10).json()


def _sandbox_requests(sandbox_url: str) -> list[dict[str, Any]]:
    return httpx.get(sandbox_url + "/sandbox/requests", timeout=30).json()["requests"]


def measure(
    sender_url: str, sandbox_url: str, pixel_code: str, concurrency: int, count: int, pid: int | None = None
) -> dict[str, Any]:
    bodies = push_bodies(count, pixel_code)
    before = _counters(sender_url)["counters"]
    requests_before = len(_sandbox_requests(sandbox_url))
    cpu_before = procstat.cpu_seconds(pid) if pid else None
    seconds, latencies, failures = _drive(sender_url, bodies, concurrency)
    cpu_after = procstat.cpu_seconds(pid) if pid else None
    after = _counters(sender_url)["counters"]
    new_requests = _sandbox_requests(sandbox_url)[requests_before:]
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    accepted = sum(r["event_count"] for r in new_requests if r["code"] == 0)
    latencies.sort()
    return {
        "concurrency": concurrency,
        "events": count,
        "seconds": round(seconds, 3),
        "events_per_second": round(count / seconds, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "tiktok_requests": len(new_requests),
        "tiktok_requests_per_event": round(len(new_requests) / count, 4),
        "events_accepted_by_tiktok": accepted,
        "firestore_rpcs_per_event": round(delta.get("firestore.rpcs", 0) / count, 4),
        "firestore_writes_per_event": round(delta.get("firestore.writes", 0) / count, 3),
        "firestore_reads_per_event": round(delta.get("firestore.reads", 0) / count, 3),
        "firestore_deletes_per_event": round(delta.get("firestore.deletes", 0) / count, 3),
        "mean_batch_events": round(delta.get("batch.events", 0) / max(delta.get("batches", 0), 1), 1),
        # The sender process's CPU (from /proc, only for a stack this benchmark started).
        "cpu_ms_per_event": None
        if cpu_before is None or cpu_after is None
        else round((cpu_after - cpu_before) / count * 1000, 3),
        "failures": failures,
    }


def _run_levels(
    sender_url: str,
    sandbox_url: str,
    pixel_code: str,
    concurrencies: Sequence[int],
    batching: bool,
    scale: float,
    pid: int | None = None,
) -> list[dict[str, Any]]:
    measure(sender_url, sandbox_url, pixel_code, 4, 8)  # warm up: clients built, connections open
    return [measure(sender_url, sandbox_url, pixel_code, c, events_for(c, batching, scale), pid) for c in concurrencies]


def _own_stack(mode_settings: dict[str, str], emulators: Any) -> Any:
    sys.path.insert(0, str(ROOT / "scripts"))
    import localstack

    settings = {
        **localstack.DEV_SETTINGS,
        **emulators.env,
        "PUBSUB_TOPIC": f"bench-{uuid.uuid4().hex[:8]}",
        "FIRESTORE_COLLECTION_PREFIX": f"bench{uuid.uuid4().hex[:8]}_",
        "LOG_LEVEL": "WARNING",  # one log line per event would measure stdout, not the sender
        **mode_settings,
    }
    ports = {name: localstack.free_port() for name in (*localstack.FUNCTIONS, "sandbox")}
    return localstack.Stack(settings=settings, ports=ports)


def run(
    concurrencies: Sequence[int] = DEFAULT_CONCURRENCY,
    modes: Sequence[str] = ("on", "off"),
    scale: float = 1.0,
    sender_url: str | None = None,
    sandbox_url: str | None = None,
    pixel_code: str = "CLOCALPIXEL0001",
) -> dict[str, Any]:
    """Measure; returns {"sender": {"batching_on": [rows], "batching_off": [rows]} or {"running": [rows]}}."""
    results: dict[str, Any] = {}
    if sender_url and sandbox_url:
        batching = _counters(sender_url).get("batching")
        rows = _run_levels(sender_url, sandbox_url, pixel_code, concurrencies, bool(batching), scale)
        results["running"] = rows
        return {"sender": results}
    sys.path.insert(0, str(ROOT / "scripts"))
    import localstack

    emulators = localstack.Emulators(
        project="bench-project", pubsub_port=localstack.free_port(), firestore_port=localstack.free_port()
    )
    emulators.start()
    try:
        for mode in modes:
            stack = _own_stack(MODES[mode], emulators)
            stack.start()
            try:
                rows = _run_levels(
                    stack.url("sender"),
                    stack.url("sandbox"),
                    stack.settings["TIKTOK_PIXEL_CODE"],
                    concurrencies,
                    mode == "on",
                    scale,
                    stack.processes["sender"].pid,
                )
            finally:
                stack.stop()
            results[f"batching_{mode}"] = rows
    finally:
        emulators.stop()
    return {"sender": results}


COLUMNS = (
    ("concurrency", "conc"),
    ("events", "events"),
    ("events_per_second", "events/s"),
    ("latency_ms_p50", "p50 ms"),
    ("latency_ms_p95", "p95 ms"),
    ("tiktok_requests_per_event", "tiktok req/ev"),
    ("firestore_rpcs_per_event", "fs rpcs/ev"),
    ("firestore_writes_per_event", "fs writes/ev"),
    ("firestore_reads_per_event", "fs reads/ev"),
    ("mean_batch_events", "batch"),
    ("cpu_ms_per_event", "cpu ms/ev"),
    ("failures", "fail"),
)


def format_table(results: dict[str, Any]) -> str:
    lines = []
    header = f"{'mode':13}" + "".join(f"{title:>14}" for _, title in COLUMNS)
    lines.append(header)
    lines.append("-" * len(header))
    for mode, rows in results["sender"].items():
        for row in rows:
            lines.append(f"{mode:13}" + "".join(f"{row[key]!s:>14}" for key, _ in COLUMNS))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sender_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCY)), help="offered concurrencies")
    parser.add_argument("--modes", default="on,off", help="batching modes to compare: on,off")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of events per level")
    parser.add_argument("--sender-url", help="measure this running sender instead of starting a stack")
    parser.add_argument("--sandbox-url", help="the sandbox that running sender talks to")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if bool(args.sender_url) != bool(args.sandbox_url):
        parser.error("--sender-url and --sandbox-url go together")
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))} (choose from on, off)")
    started = time.monotonic()
    results = run(concurrencies, modes, args.scale, args.sender_url, args.sandbox_url)
    print(format_table(results))
    print(f"total {time.monotonic() - started:.1f}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Collect endpoint benchmark: requests/s, p50 and p99 on one instance, next to a no-op function.

Starts its own Firestore and Pub/Sub emulators on free ports, one collect
instance (functions-framework under gunicorn, ``THREADS`` threads, as the stack
runs it) and the no-op function of ``bench/noop/main.py`` the same way, then
runs the same bounded load against each, one after the other: a fixed number of
requests from a separate process, ``concurrency`` threads on keep-alive loopback
connections, each waiting for its answer before sending the next. Scenarios:

- ``noop``: the floor (functions-framework, gunicorn, loopback HTTP, body read);
- ``collect_withheld``: a valid request without consent under opt-in: read,
  parse, admit, validate, decide, answer 204; no I/O;
- ``collect_accepted``: a consented AddToCart with a join key: the same plus one
  batched Firestore write and one Pub/Sub publish, both waited for.

On a machine with two or more CPUs the functions under test get the last CPU
to themselves and the emulators and the load process the others (see
:func:`cpu_layout`): in production Firestore and Pub/Sub do not run on the
function's CPU, and the emulators' JVMs spend more CPU per write than the
function does. The scenarios take turns over several rounds (so a noisy moment on a shared
machine does not hit one scenario only); each prints the median round's requests
per second, p50 and p99 over all its requests, the server's CPU time per request
(the function process and its gunicorn worker, from /proc: the figure least
disturbed by the load and the emulators sharing the CPUs) and its ratio to the
no-op. The emulators are not Firestore and Pub/Sub: the accepted figures measure
the path on this machine, not production latency. Usage::

    python -m bench.collect_bench [--requests 3000] [--concurrency 16] [--threads 8] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import localstack  # noqa: E402

from bench import procstat  # noqa: E402

PIXEL = "CBENCHPIXEL01"
ORIGIN = "https://shop.example"
HEADERS = {
    "Origin": ORIGIN,
    "Content-Type": "text/plain;charset=UTF-8",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0 Safari/537.36",
    "X-Forwarded-For": "203.0.113.24",
}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def bodies(count: int, consent: bool) -> list[bytes]:
    """Distinct collect requests (own join key and event id each), as collect.js sends them."""
    run = uuid.uuid4().hex[:8]
    now_ms = int(time.time() * 1000)
    made = []
    for index in range(count):
        document: dict[str, Any] = {
            "pixel_code": PIXEL,
            "context": {
                "ttclid": f"E.C.P.bench-{run}-{index}",
                "ttp": f"bench.ttp.{index}",
                "page_url": "https://shop.example/products/blue-shirt?variant=4242",
                "referrer": "https://www.tiktok.com/",
                "locale": "en-US",
                # A real cart token is long and random; collect ignores guessable ones.
                "join_keys": {"shopify_cart_token": uuid.uuid4().hex},
            },
            "events": [
                {
                    "event": "AddToCart",
                    "event_id": f"bench-{run}-{index}",
                    "event_time": now_ms,
                    "properties": {
                        "currency": "USD",
                        "value": 25.0,
                        "content_type": "product",
                        "contents": [
                            {"content_id": "4242", "content_name": "Blue shirt", "price": 25.0, "quantity": 1}
                        ],
                    },  # fmt: skip
                }
            ],
        }
        if consent:
            document["consent"] = {"ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "granted"}
        made.append(json.dumps(document).encode())
    return made


def _load(url: str, payloads: list[bytes], concurrency: int, cpus: frozenset[int] | None = None) -> dict[str, Any]:
    """Runs in its own process: POST every payload once over ``concurrency`` keep-alive connections."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    parts = urlsplit(url)
    lock = threading.Lock()
    next_index = iter(range(len(payloads)))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    def worker() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine: list[float] = []
        seen: Counter[int] = Counter()
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            body = payloads[index]
            started = time.perf_counter()
            try:
                connection.request("POST", "/", body=body, headers={**HEADERS, "Content-Length": str(len(body))})
                response = connection.getresponse()
                response.read()
                seen[response.status] += 1
            except (OSError, http.client.HTTPException):
                seen[0] += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            mine.append(time.perf_counter() - started)
        connection.close()
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "latencies": latencies, "statuses": dict(statuses)}


def cpu_layout() -> dict[str, frozenset[int] | None]:
    """The function under test on one CPU of its own; emulators and load on the others.

    In production Firestore and Pub/Sub run on Google's servers and the callers
    elsewhere on the internet: an instance's CPU is its own. Sharing two CPUs
    with the emulators' JVMs would measure the emulators (which spend more CPU
    per write than the function itself) instead. With one CPU nothing is pinned.
    """
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(available) < 2:
        return {"function": None, "others": None}
    return {"function": frozenset(available[-1:]), "others": frozenset(available[:-1])}


def _summary(runs: list[dict[str, Any]], cpu: list[float], expected: int, concurrency: int) -> dict[str, Any]:
    latencies = [value for run in runs for value in run["latencies"]]
    requests = len(latencies)
    statuses: Counter[int] = Counter()
    for run in runs:
        statuses.update(run["statuses"])
    return {
        "requests": requests,
        "rounds": len(runs),
        "concurrency": concurrency,
        # The median round: the rounds alternate between scenarios, so a noisy moment hits one round.
        "requests_per_second": round(statistics.median(len(r["latencies"]) / r["seconds"] for r in runs), 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "server_cpu_ms_per_request": round(sum(cpu) / requests * 1000, 3) if cpu and None not in cpu else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "unexpected": requests - statuses.get(expected, 0),
    }


def _start_function(
    name: str, target: str, source: Path, env: dict[str, str], cpus: frozenset[int] | None = None
) -> tuple[Any, str]:
    port = localstack.free_port()
    process = localstack._start(
        [sys.executable, "-m", "functions_framework", "--target", target, "--source", str(source),
         "--host", "127.0.0.1", "--port", str(port)],
        env, name, cpus,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    localstack.wait_http(url + "healthz", timeout=60, process=process)
    return process, url


def run(
    requests: int = 3000, concurrency: int = 16, threads: int = 8, warmup: int = 200, rounds: int = 3
) -> dict[str, Any]:
    """Start emulators and both functions, measure every scenario, stop everything. Returns the figures."""
    layout = cpu_layout()
    emulators = localstack.Emulators(
        "bench-project", localstack.free_port(), localstack.free_port(), cpus=layout["others"]
    )
    topic = f"bench-collect-{uuid.uuid4().hex[:8]}"
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "THREADS": str(threads), **emulators.env}
    collect_env = {
        **base_env,
        "TIKTOK_PIXEL_CODE": PIXEL,
        "CONSENT_POLICY": "opt-in",
        "COLLECT_ALLOWED_ORIGINS": ORIGIN,
        "COLLECT_RATE_LIMIT_PER_MINUTE": "0",  # the load comes from one address
        "PUBSUB_TOPIC": topic,
        "FIRESTORE_COLLECTION_PREFIX": f"bench{uuid.uuid4().hex[:8]}_",
        "LOG_LEVEL": "INFO",  # production's level: one outcome line per request is part of the cost
        "EXPOSE_METRICS": "true",  # GET /metrics: Firestore and Pub/Sub operations, read around each run
    }
    saved_env = {k: os.environ.get(k) for k in emulators.env}
    processes: list[Any] = []
    try:
        emulators.start()
        os.environ.update(emulators.env)
        from shared.infra.pubsub import make_publisher_client

        publisher = make_publisher_client()
        publisher.create_topic(name=publisher.topic_path(emulators.project, topic))
        noop, noop_url = _start_function(
            "bench-noop", "noop", ROOT / "bench" / "noop" / "main.py", base_env, layout["function"]
        )
        collect, collect_url = _start_function(
            "bench-collect", "collect", ROOT / "functions" / "collect" / "main.py", collect_env, layout["function"]
        )
        processes += [noop, collect]
        scenarios = {
            "noop": (noop, noop_url, False, 200),
            "collect_withheld": (collect, collect_url, False, 204),
            "collect_accepted": (collect, collect_url, True, 200),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
        cpu: dict[str, list[float]] = {name: [] for name in scenarios}
        operations: dict[str, dict[str, int]] = {name: {} for name in scenarios if name != "noop"}
        per_round = max(1, requests // rounds)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as loader:
            for _, url, consent, _ in scenarios.values():
                loader.submit(_load, url, bodies(warmup, consent), concurrency, layout["others"]).result()
            for _ in range(rounds):
                for name, (process, url, consent, _) in scenarios.items():
                    payloads = bodies(per_round, consent)
                    counted = procstat.counters(url) if name in operations else {}
                    before = procstat.cpu_seconds(process.pid)
                    runs[name].append(loader.submit(_load, url, payloads, concurrency, layout["others"]).result())
                    after = procstat.cpu_seconds(process.pid)
                    if before is not None and after is not None:
                        cpu[name].append(after - before)
                    if name in operations:
                        for key, value in procstat.counters(url).items():
                            operations[name][key] = operations[name].get(key, 0) + value - counted.get(key, 0)
        results: dict[str, Any] = {
            name: _summary(runs[name], cpu[name], expected, concurrency)
            for name, (_, _, _, expected) in scenarios.items()
        }
        for name, counted in operations.items():
            served = results[name]["requests"]
            results[name]["per_request"] = {key: round(value / served, 3) for key, value in sorted(counted.items())}
        floor = results["noop"]["requests_per_second"]
        for name in ("collect_withheld", "collect_accepted"):
            results[name]["ratio_to_noop"] = round(results[name]["requests_per_second"] / floor, 2)
        results["settings"] = {"threads": threads, "concurrency": concurrency, "requests": per_round * rounds,
                               "rounds": rounds, "cpus": os.cpu_count(),
                               "pinned": {k: sorted(v) if v else None for k, v in layout.items()}}  # fmt: skip
        return results
    finally:
        for process in processes:
            localstack.stop_process(process)
        emulators.stop()
        localstack.restore_environ(saved_env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per scenario (after a warmup)")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel connections of the load process")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads of each function instance")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each running every scenario once in turn")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = run(requests=args.requests, concurrency=args.concurrency, threads=args.threads, rounds=args.rounds)
    settings = result["settings"]
    print(f"one instance each, {settings['threads']} gunicorn threads, {settings['concurrency']} connections, "
          f"{settings['requests']} requests per scenario in {settings['rounds']} rounds, "
          f"{settings['cpus']} CPUs shared with the emulators and the load")  # fmt: skip
    for name in ("noop", "collect_withheld", "collect_accepted"):
        figures = result[name]
        ratio = f"  {figures['ratio_to_noop']:.2f} x noop" if "ratio_to_noop" in figures else ""
        print(f"{name:17} {figures['requests_per_second']:7.1f} req/s  p50 {figures['p50_ms']:6.2f} ms  "
              f"p99 {figures['p99_ms']:6.2f} ms  server CPU {figures['server_cpu_ms_per_request']} ms/req  "
              f"unexpected {figures['unexpected']}{ratio}")  # fmt: skip
        per = figures.get("per_request") or {}
        if per.get("collect.commits"):
            print(f"{'':17} {1 / per['collect.commits']:.1f} requests per commit, per request: "
                  f"{per.get('firestore.writes', 0)} Firestore writes, {per.get('firestore.rpcs', 0)} Firestore RPCs, "
                  f"{per.get('pubsub.messages', 0)} messages in {per.get('pubsub.rpcs', 0)} Pub/Sub RPCs")  # fmt: skip
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

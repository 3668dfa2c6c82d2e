"""Cost per million events, from what the benchmarks measured and the list prices in bench/prices.md.

Three paths to TikTok, each costed per event it delivers:

- ``collect``: one consented browser request (its event published), then the
  sender; its Firestore documents are those of a realistic session
  (``session_bench``: a landing with a ttclid, then five events whose context
  has not changed) when that part ran, else those of one request with a new
  context, then the sender's for an order event;
- ``shopify``: one ``orders/paid`` webhook, then the sender;
- ``woocommerce``: one order webhook, then the sender.

Measured inputs (per request or per event, under the benchmarks' concurrent
load): each function's CPU time from /proc, and the Firestore documents read,
written and deleted and the Pub/Sub messages and bytes the functions counted
themselves (GET /metrics, see shared.infra.metrics). Assumptions, printed with the
figures:

- function instance time equals its CPU time (instances kept busy by load,
  request-based billing, 1 vCPU and the configured memory per instance); an
  instance idling on I/O at low traffic is billed for more;
- every document written is later deleted once by a TTL policy (an upper bound:
  updates of a document already written are counted again);
- a message is billed once when published and once when pushed, at least 1000
  bytes each;
- free tiers are left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PRICES_FILE = ROOT / "bench" / "prices.md"
FIRESTORE_KEYS = ("firestore.reads", "firestore.writes", "firestore.deletes")
MEMORY_GIB = 0.5  # available_memory = "512Mi" for every function in terraform/functions.tf

_PATTERNS = {
    "request_per_million": r"\$([\d.]+) per million requests",
    "vcpu_second": r"\$([\d.]+) per vCPU-second",
    "gib_second": r"\$([\d.]+) per GiB-second",
    "firestore_read_per_100k": r"\$([\d.]+) per 100k reads",
    "firestore_write_per_100k": r"\$([\d.]+) per 100k writes",
    "firestore_delete_per_100k": r"\$([\d.]+) per 100k deletes",
    "pubsub_per_tib": r"\$([\d.]+) per TiB",
    "pubsub_min_bytes": r"at least (\d+) bytes",
}


class PricesNotFound(RuntimeError):
    pass


def load_prices(path: Path = PRICES_FILE) -> dict[str, float]:
    """The list prices, read from the reference file (which cites its sources)."""
    if not path.is_file():
        raise PricesNotFound(f"{path} is missing: the cost estimate reads its prices there")
    text = path.read_text()
    prices = {}
    for name, pattern in _PATTERNS.items():
        found = re.search(pattern, text)
        if not found:
            raise PricesNotFound(f"{path} no longer states {name} in the form {pattern!r}")
        prices[name] = float(found.group(1))
    return prices


def _path_cost(receiver: dict[str, Any], sender: dict[str, Any], prices: dict[str, float]) -> dict[str, Any]:
    """Dollars per million events for one receiver's figures per event plus the sender's per event."""
    million = 1_000_000
    cpu_seconds = ((receiver["cpu_ms"] or 0) + (sender["cpu_ms"] or 0)) / 1000
    functions = million * (
        2 * prices["request_per_million"] / million  # the receiver's request and the push to the sender
        + cpu_seconds * prices["vcpu_second"]
        + cpu_seconds * MEMORY_GIB * prices["gib_second"]
    )
    reads = receiver["firestore.reads"] + sender["firestore.reads"]
    writes = receiver["firestore.writes"] + sender["firestore.writes"]
    deletes = receiver["firestore.deletes"] + sender["firestore.deletes"] + writes  # TTL deletes every write
    firestore = (
        million
        / 100_000
        * (
            reads * prices["firestore_read_per_100k"]
            + writes * prices["firestore_write_per_100k"]
            + deletes * prices["firestore_delete_per_100k"]
        )
    )
    messages = receiver["pubsub.messages"] or 1.0
    size = receiver["pubsub.bytes"] / messages if receiver["pubsub.bytes"] else 0.0
    billed_bytes = 2 * max(prices["pubsub_min_bytes"], size)  # publish + push
    pubsub = million * billed_bytes / 2**40 * prices["pubsub_per_tib"]
    return {
        "functions": round(functions, 2),
        "firestore": round(firestore, 2),
        "pubsub": round(pubsub, 2),
        "total": round(functions + firestore + pubsub, 2),
        "inputs_per_event": {
            "cpu_ms": round(cpu_seconds * 1000, 3),
            "firestore_reads": round(reads, 3),
            "firestore_writes": round(writes, 3),
            "firestore_deletes_with_ttl": round(deletes, 3),
            "pubsub_bytes": round(size, 1),
        },
    }


def estimate(figures: dict[str, Any], prices: dict[str, float] | None = None) -> dict[str, Any]:
    """Cost per million events per path, from the parts' figures (missing parts are skipped)."""
    prices = prices or load_prices()
    sender = _sender_per_event(figures.get("sender_bench"))
    # Collect as deployed (80 threads) when measured: what an instance does in production.
    collect_part = figures.get("collect_bench_deployed") or figures.get("collect_bench") or {}
    receivers = {
        "collect": collect_part.get("collect_accepted", {}).get("per_request"),
        "shopify": (figures.get("shopify_bench") or {}).get("concurrent", {}).get("per_request"),
        "woocommerce": (figures.get("woocommerce_bench") or {}).get("concurrent", {}).get("per_request"),
    }
    collect = collect_part.get("collect_accepted")
    if receivers["collect"] is not None and collect is not None:
        receivers["collect"] = {**receivers["collect"], "cpu_ms": collect["server_cpu_ms_per_request"]}
    session = (figures.get("session_bench") or {}).get("per_event")
    paths = {}
    for name, receiver in receivers.items():
        if receiver is not None and sender is not None:
            path_sender = sender
            if name == "collect" and session:
                # A browser event's documents differ from an order event's on both sides (docs/collect.md).
                receiver = {**receiver, **{key: session["receiver"][key] for key in FIRESTORE_KEYS}}
                path_sender = {**sender, **{key: session["sender"][key] for key in FIRESTORE_KEYS}}
            # One event per request in every benchmark: per request is per event.
            paths[name] = _path_cost(_complete(receiver), path_sender, prices)
    return {
        "usd_per_million_events": paths,
        "prices": prices,
        "assumptions": [
            "instance time = measured CPU time (busy instances, 1 vCPU, 0.5 GiB each)",
            "every written document later deleted once by TTL",
            "each message billed on publish and on push, at least 1000 bytes each",
            "free tiers not deducted",
        ],
    }


def _sender_per_event(sender_figures: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sender's figures at its highest offered load with batching on."""
    if not sender_figures:
        return None
    rows = sender_figures.get("sender", {}).get("batching_on") or sender_figures.get("sender", {}).get("running")
    if not rows:
        return None
    top = max(rows, key=lambda row: row["concurrency"])
    return {
        "cpu_ms": top.get("cpu_ms_per_event"),
        "firestore.reads": top["firestore_reads_per_event"],
        "firestore.writes": top["firestore_writes_per_event"],
        "firestore.deletes": top["firestore_deletes_per_event"],
    }


def _complete(receiver: dict[str, Any]) -> dict[str, Any]:
    keys = ("cpu_ms", "firestore.reads", "firestore.writes", "firestore.deletes", "pubsub.messages", "pubsub.bytes")
    return {key: receiver.get(key) or 0.0 for key in keys}


def format_estimate(result: dict[str, Any]) -> str:
    lines = ["cost per million events, USD (list prices from bench/prices.md):"]
    lines.append(f"  {'path':12} {'functions':>10} {'firestore':>10} {'pubsub':>8} {'total':>8}   measured per event")
    for name, row in result["usd_per_million_events"].items():
        inputs = row["inputs_per_event"]
        lines.append(
            f"  {name:12} {row['functions']:10.2f} {row['firestore']:10.2f} {row['pubsub']:8.2f} {row['total']:8.2f}"
            f"   CPU {inputs['cpu_ms']} ms, {inputs['firestore_reads']} reads, {inputs['firestore_writes']} writes,"
            f" {inputs['pubsub_bytes']:.0f} B message"
        )
    lines.append("  assumptions: " + "; ".join(result["assumptions"]))
    return "\n".join(lines)

"""A 30 MB body, chunked or with its Content-Length, is refused without being read, by every function.

An unauthenticated client must not be able to make a function buffer what it
sends (8 concurrent 30 MB bodies once took a Shopify worker
from 102 MB to 411 MB; at 512 MiB per instance that is an out-of-memory kill).
The client is a raw socket that watches for an answer between 64 kB pieces,
so it sees whether the function answered (or hung up) before the body was all
sent; the worker's peak RSS (VmHWM, reset just before) shows whether it held it.
"""

from __future__ import annotations

import pytest

from tests.reliability import harness

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

BODY_BYTES = 30 * 1024 * 1024
# Half the body: nowhere near holding it, with room for a function that reads up to its own limit before it
# refuses (WooCommerce: 8 MB, and a bytes copy of what it read).
MAX_PEAK_GROWTH_KB = 15 * 1024


def _headers(name: str, settings: dict[str, str]) -> dict[str, str]:
    """What each function's legitimate caller sends, but with a signature that cannot match."""
    if name == "collect":
        return harness.collect_headers("198.18.200.1")
    if name == "shopify_webhook":
        headers = harness.shopify_headers(b"", settings, "orders/paid", "huge-body")
        return {**headers, "X-Shopify-Hmac-Sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    if name == "woocommerce_webhook":
        headers = harness.woocommerce_headers(b"", settings)
        return {**headers, "X-WC-Webhook-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    return {"Content-Type": "application/json"}  # the Pub/Sub push to the sender


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("name", ["collect", "shopify_webhook", "woocommerce_webhook", "sender"])
def test_a_30_mb_body_is_refused_before_it_is_read(rstack, name, chunked):
    rstack.ensure_up(name)
    workers = rstack.worker_pids(name)
    assert workers, f"{name} has no worker process under its master {rstack.master_pid(name)}"
    before = {pid: harness.proc_status(pid, "VmRSS") for pid in workers}
    for pid in workers:
        harness.reset_peak_rss(pid)

    result = harness.send_oversized("127.0.0.1", rstack.port(name), _headers(name, rstack.settings), BODY_BYTES,
                                    chunked=chunked)  # fmt: skip

    growth_kb = {pid: harness.proc_status(pid, "VmHWM") - before[pid] for pid in workers if harness.alive(pid)}
    report = (f"{name} ({'chunked' if chunked else 'Content-Length'}): status {result.status}, "
              f"{result.sent_bytes // 1024} of {result.total_bytes // 1024} kB sent before it answered or hung up, "
              f"closed={result.closed}, {result.seconds:.1f}s, peak RSS growth {growth_kb} kB, "
              f"answer {result.head[:120]!r}")  # fmt: skip
    assert len(growth_kb) == len(workers), f"a worker died: {report}"
    assert result.refused_early, f"the whole body was sent before any answer: {report}"
    # A connection cut right after the 413 can reset before the client reads it: then no status is seen.
    assert result.status in (413, None), f"expected 413 Payload Too Large: {report}"
    assert max(growth_kb.values()) < MAX_PEAK_GROWTH_KB, f"the function held the body in memory: {report}"
    assert rstack.healthy(name, 10), f"{name} does not answer after the huge body: {report}"

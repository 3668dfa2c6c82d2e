"""The local stack under a mix of real traffic, shared by the benchmarks that drive it for minutes.

``spike_bench`` (sale day) and ``throttle_bench`` (TikTok throttling everyone)
both start the stack as the reliability suite does (:func:`local_stack`) and
drive it open loop (:func:`drive`): Shopify orders (a quarter as
``orders/create`` then ``orders/paid``, a tenth delivered twice at once under
one webhook id, every non-2xx retried as Shopify does), WooCommerce orders
(posted once) and browser sessions to collect (a landing with a ttclid, then
five events, half a second apart). :class:`Record` keeps what was answered and
which events are expected at the sandbox; the rest reads the functions'
counters, their memory, and the backlog at the sandbox.

Import it after setting ``LOCAL_RUN_DIR`` (localstack reads it at import) and
putting the checkout and ``scripts/`` on ``sys.path``, as the benchmarks do.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import localstack

from bench import procstat
from tests.reliability import harness

FUNCTIONS = tuple(localstack.FUNCTIONS)
STACK_SETTINGS = {"CONSENT_POLICY": "opt-out", "COLLECT_TRUSTED_PROXY_HOPS": "1", "LOG_LEVEL": "WARNING"}
SESSION_EVENTS = 6
SESSION_STEP_SECONDS = 0.5


@contextmanager
def local_stack(**overrides: str) -> Iterator[Any]:
    """Emulators and the functions on free ports, with :data:`STACK_SETTINGS` and ``overrides``; all stopped after."""
    from tests.conftest import running_stack

    emulators = localstack.Emulators("bench-project", localstack.free_port(), localstack.free_port())
    saved = {k: os.environ.get(k) for k in emulators.env}
    emulators.start()
    os.environ.update(emulators.env)
    try:
        with running_stack(emulators, **STACK_SETTINGS, **overrides) as rs:
            yield rs
    finally:
        emulators.stop()
        localstack.restore_environ(saved)


# --- what is sent -------------------------------------------------------------------------------


class Record:
    """Everything sent and answered, thread-safe: answers, expected events and when each was published."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[str, Counter[str]] = defaultdict(Counter)  # "<phase> <endpoint>" -> status counts
        self.published: dict[str, float] = {}  # event id -> when its publishing answer came back (first)
        self.sent_at: dict[str, float] = {}  # order event id -> its first webhook attempt
        self.phase_of: dict[str, str] = {}
        self.parked: set[str] = set()

    def answer(self, phase: str, endpoint: str, status: str) -> None:
        with self.lock:
            self.answers[f"{phase} {endpoint}"][status] += 1

    def expect(self, phase: str, event_id: str, at: float, sent: float | None = None) -> None:
        with self.lock:
            self.published.setdefault(event_id, at)
            self.phase_of.setdefault(event_id, phase)
            if sent is not None:
                self.sent_at[event_id] = min(sent, self.sent_at.get(event_id, sent))


def _status(attempt: harness.Attempt) -> str:
    return str(attempt.status) if attempt.status is not None else attempt.error or "?"


def shopify_job(rs: Any, http: httpx.Client, record: Record, phase: str, index: int) -> None:
    settings = rs.settings
    url = rs.stack.url("shopify_webhook") + "/"
    order = harness.shopify_order()
    event_id = harness.shopify_purchase_id(settings["SHOPIFY_SHOP_DOMAIN"], order)
    started = time.time()
    deliveries = []
    if index % 4 == 0:  # orders/create, then orders/paid: one Purchase
        deliveries.append(harness.deliver_like_shopify(http, url, settings, order, "orders/create"))
    webhook_id = str(uuid.uuid4())
    copies = 2 if index % 10 == 5 else 1  # the same webhook delivered twice at once, as Shopify sometimes does

    def deliver() -> None:
        deliveries.append(harness.deliver_like_shopify(http, url, settings, order, webhook_id=webhook_id))

    threads = [threading.Thread(target=deliver) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for delivery in deliveries:
        for attempt in delivery.attempts:
            record.answer(phase, "shopify", _status(attempt))
    published = [a.at for d in deliveries for a in d.attempts if a.status == 200 and a.outcome == "published"]
    if published:
        record.expect(phase, event_id, min(published), started)


def woocommerce_job(rs: Any, http: httpx.Client, record: Record, phase: str, index: int) -> None:
    settings = rs.settings
    order = harness.woocommerce_order()
    event_id = harness.woocommerce_purchase_id(settings["WOOCOMMERCE_SITE_URL"], order)
    started = time.time()
    delivery = harness.deliver_like_woocommerce(http, rs.stack.url("woocommerce_webhook") + "/", settings, order)
    final = delivery.final
    assert final is not None
    record.answer(phase, "woocommerce", f"{_status(final)} {final.outcome}" if final.outcome else _status(final))
    if final.status == 200 and final.outcome == "published":
        record.expect(phase, event_id, final.at, started)
    elif final.outcome == "parked":
        with record.lock:
            record.parked.add(event_id)


def session_bodies(pixel: str, run: str, index: int, tag: str = "spike") -> list[tuple[str, bytes]]:
    """One shopper's requests to collect, as collect.js sends them: (event id, body) each; ids start with ``tag``."""
    cart = uuid.uuid4().hex
    ttclid = f"E.C.P.{tag}-{run}-{index}"
    pages = ["/?ttclid=" + ttclid, "/products/blue-shirt", "/products/blue-shirt", "/products/red-shirt",
             "/collections/all", "/cart"]  # fmt: skip
    events = ["ViewContent", "ViewContent", "AddToCart", "ViewContent", "ViewContent", "AddToCart"]
    bodies = []
    for step, (page, event) in enumerate(zip(pages, events, strict=True)):
        context: dict[str, Any] = {"ttclid": ttclid, "ttp": f"{tag}.ttp.{run}.{index}",
                                   "page_url": harness.COLLECT_ORIGIN + page, "locale": "en-US",
                                   "join_keys": {"shopify_cart_token": cart}}  # fmt: skip
        if step:
            context["unchanged"] = True  # the snippet sent this very context on the landing
        event_id = f"{tag}-{run}-{index}-{step}"
        document = {
            "pixel_code": pixel,
            "consent": {"ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "granted"},
            "context": context,
            "events": [{"event": event, "event_id": event_id, "event_time": int(time.time() * 1000),
                        "properties": {"currency": "USD", "value": 25.0, "content_type": "product",
                                       "contents": [{"content_id": "4242", "price": 25.0, "quantity": 1}]}}],
        }  # fmt: skip
        bodies.append((event_id, json.dumps(document).encode()))
    return bodies


def session_job(rs: Any, http: httpx.Client, record: Record, phase: str, index: int, run: str, tag: str = "spike"
                ) -> None:  # fmt: skip
    url = rs.stack.url("collect") + "/"
    headers = harness.collect_headers(harness.shopper_ip(index))
    for step, (event_id, body) in enumerate(session_bodies(rs.settings["TIKTOK_PIXEL_CODE"], run, index, tag)):
        if step:
            time.sleep(SESSION_STEP_SECONDS)
        try:
            response = http.post(url, content=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            record.answer(phase, "collect", type(exc).__name__)
            continue
        outcome = response.headers.get("X-Collect-Outcome", "")
        record.answer(phase, "collect", f"{response.status_code} {outcome}".strip())
        if response.status_code == 200 and outcome == "accepted":
            record.expect(phase, event_id, time.time())


# --- what is measured while it runs ------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (gunicorn's workers), in KiB, from /proc."""
    total = 0
    for member in [pid, *_descendants(pid)]:
        try:
            total += harness.proc_status(member, "VmRSS")
        except (OSError, KeyError):
            continue
    return total


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = harness.children(frontier.pop())
        found += children
        frontier += children
    return found


class Sampler(threading.Thread):
    """Peak RSS per function process tree, per phase, every half second."""

    def __init__(self, stack: Any) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.phase = "start"
        self.peaks: dict[str, dict[str, int]] = defaultdict(dict)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for name, process in self.stack.processes.items():
                if name == "sandbox":
                    continue
                kib = rss_kib(process.pid)
                peaks = self.peaks[self.phase]
                peaks[name] = max(peaks.get(name, 0), kib)


def counters(stack: Any) -> dict[str, dict[str, int]]:
    found = {}
    for name in FUNCTIONS:
        try:
            found[name] = procstat.counters(stack.url(name))
        except OSError:
            found[name] = {}
    return found


def delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {name: {k: v - before.get(name, {}).get(k, 0) for k, v in after.get(name, {}).items()
                   if v - before.get(name, {}).get(k, 0)} for name in after}  # fmt: skip


def _schedule(rate: float, seconds: float, offset: float = 0.0) -> list[float]:
    count = int(rate * seconds + 0.5)
    return [offset + (i + 0.5) / rate for i in range(count)] if rate > 0 else []


def drive(rs: Any, http: httpx.Client, record: Record, pool: ThreadPoolExecutor, phase: str, seconds: float,
          orders_per_second: float, sessions_per_second: float, counter: Counter[str], run: str,
          tag: str = "spike") -> list[Future[None]]:  # fmt: skip
    """Open loop: every job starts on schedule, answered or not; returns their futures."""
    jobs: list[tuple[float, Any]] = []
    jobs += [
        (t, lambda i: shopify_job(rs, http, record, phase, i)) for t in _schedule(orders_per_second * 2 / 3, seconds)
    ]
    jobs += [(t, lambda i: woocommerce_job(rs, http, record, phase, i))
             for t in _schedule(orders_per_second / 3, seconds)]  # fmt: skip
    jobs += [(t, lambda i: session_job(rs, http, record, phase, i, run, tag))
             for t in _schedule(sessions_per_second, seconds)]  # fmt: skip
    jobs.sort(key=lambda job: job[0])
    futures = []
    started = time.monotonic()
    for at, job in jobs:
        delay = started + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        counter["jobs"] += 1
        futures.append(pool.submit(job, counter["jobs"]))
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    return futures


def percentile(values: list[float], fraction: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def summary(latencies: list[float]) -> dict[str, Any]:
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return {"p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "p99_ms": None if p99 is None else round(p99 * 1000, 1)}  # fmt: skip


def backlog_curve(published: dict[str, float], arrived: dict[str, float], start: float, end: float,
                  step: float = 0.5) -> list[tuple[float, int]]:  # fmt: skip
    """(seconds from start, events published and not yet at the sandbox), every ``step``."""
    pub = sorted(published.values())
    got = sorted(arrived[e] for e in published if e in arrived)
    curve, i, j, t = [], 0, 0, start
    while t <= end:
        while i < len(pub) and pub[i] <= t:
            i += 1
        while j < len(got) and got[j] <= t:
            j += 1
        curve.append((round(t - start, 1), i - j))
        t += step
    return curve


def await_arrivals(sandbox: str, published: Iterable[str], timeout: float, late: float = 5.0) -> None:
    """Wait (at most ``timeout`` s) until every published event is at the sandbox, then ``late`` s for late copies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arrived = harness.sandbox_counts(sandbox)
        if all(arrived[e] for e in published):
            break
        time.sleep(1.0)
    time.sleep(late)


@dataclass(frozen=True)
class Tally:
    """What the sandbox received of the events published: each one's first arrival, the lost and the duplicated."""

    first: dict[str, float]
    lost: list[str]
    duplicated: dict[str, int]


def tally(events: Iterable[dict[str, Any]], expected: Iterable[str]) -> Tally:
    first: dict[str, float] = {}
    copies: Counter[str] = Counter()
    for event in events:
        copies[event["event_id"]] += 1
        first[event["event_id"]] = min(event["received_at"], first.get(event["event_id"], float("inf")))
    wanted = set(expected)
    lost = sorted(e for e in wanted if not copies[e])
    duplicated = {e: n - 1 for e, n in copies.items() if e in wanted and n > 1}
    return Tally(first, lost, duplicated)

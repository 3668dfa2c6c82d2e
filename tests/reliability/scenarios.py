"""The issue's adversarial scenarios, sized by their caller: the tests run them small, ``bench/adversarial.py`` big.

Each scenario drives traffic the way the platforms send it against a running
:class:`ReliabilityStack`, hurts one thing on purpose, and returns a summary:
the TikTok-side :class:`~tests.reliability.harness.Tally` plus what the
platforms saw (5xx answers, deliveries that never got a 2xx). Assertions are
the caller's: a test asserts, a benchmark reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import localstack

from tests.conftest import RunningStack
from tests.conftest import running_stack as test_stack
from tests.reliability import harness

RESTART_SECONDS = 30.0  # Cloud Run starts a new instance within seconds; the local supervisor should too
SHOPIFY_RETRY_FOR = 75.0  # past the 30 s lease of an order claim whose holder died


# --- the stack ---------------------------------------------------------------------------


class ReliabilityStack(RunningStack):
    """The test stack, with what the scenarios do to it: kill, restart, pause, inject faults."""

    @property
    def sandbox(self) -> str:
        return self.stack.url("sandbox")

    def port(self, name: str) -> int:
        return self.stack.ports[name]

    def master_pid(self, name: str) -> int:
        """The function's gunicorn master (the process the stack started, or its supervisor's replacement)."""
        return self.stack.pid(name)

    def worker_pids(self, name: str, timeout: float = 20.0) -> list[int]:
        """Its workers (the processes that run our code), waiting for a respawned one to come up."""
        deadline = time.monotonic() + timeout
        while True:
            workers = [p for p in self.stack.worker_pids(name) if harness.alive(p)]
            if workers or time.monotonic() > deadline:
                return workers
            time.sleep(0.1)

    def healthy(self, name: str, timeout: float) -> bool:
        return harness.wait_http_ok(self.url(name) + "/healthz", timeout)

    def wait_replaced(self, name: str, old_master: int, timeout: float) -> bool:
        """Whether the stack itself brought ``name`` back as a new process within ``timeout`` (no help from us)."""
        try:
            self.stack.wait_healthy(name, timeout, replacing=old_master)
        except (TimeoutError, RuntimeError):
            return False
        return True

    def emulator_pgid(self, which: str) -> int:
        """The process group of the ``firestore`` or ``pubsub`` emulator (gcloud and its Java child)."""
        for process in self.emulators.processes:
            if which in harness.cmdline(process.pid):
                return os.getpgid(process.pid)
        raise LookupError(f"no {which} emulator among the session's processes")

    def restart_function(self, name: str) -> None:
        """Start ``name`` again through the stack's own restart, and wait until it answers."""
        self.stack.restart(name)

    def ensure_up(self, name: str) -> None:
        """Leave ``name`` running for the next scenario, whatever the last one did to it."""
        process = self.stack.processes.get(name)
        if process is not None and process.poll() is None and self.healthy(name, 10):
            return
        self.restart_function(name)

    def faults(self, **config: Any) -> None:
        url = self.sandbox + "/sandbox/faults"
        if config:
            httpx.post(url, json=config, timeout=5).raise_for_status()
        else:
            httpx.delete(url, timeout=5).raise_for_status()

    def clear_sandbox(self) -> None:
        httpx.delete(self.sandbox + "/sandbox/events", timeout=10).raise_for_status()


# Opt-out consent (every paid order must reach TikTok), one trusted proxy hop (many shoppers, one address
# each), INFO as deployed; the short lease (a killed sender's events taken over in a test's time box) is the stack's.
STACK_SETTINGS = {"CONSENT_POLICY": "opt-out", "COLLECT_TRUSTED_PROXY_HOPS": "1", "LOG_LEVEL": "INFO"}


@contextlib.contextmanager
def running_stack(emulators: localstack.Emulators) -> Iterator[ReliabilityStack]:
    with test_stack(emulators, **STACK_SETTINGS) as base:
        try:
            yield ReliabilityStack(base.stack, base.emulators, base.topology, base.settings)
        finally:
            # Never leave an emulator stopped, whatever a scenario did (before the stack stops).
            for process in emulators.processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(process.pid), signal.SIGCONT)


# --- Firestore paused --------------------------------------------------------------------


def firestore_pause(rs: ReliabilityStack, http: httpx.Client, *, shopify_orders: int, woocommerce_orders: int,
                    traffic_seconds: float, pause_at: float, pause_seconds: float,
                    retry_for: float = SHOPIFY_RETRY_FOR) -> dict[str, Any]:  # fmt: skip
    """Orders (Shopify with create+paid pairs and twin deliveries, WooCommerce) while Firestore is SIGSTOPped."""
    settings, shop = rs.settings, rs.settings["SHOPIFY_SHOP_DOMAIN"]
    shopify_url, woo_url = rs.url("shopify_webhook") + "/", rs.url("woocommerce_webhook") + "/"
    shopify = [harness.shopify_order() for _ in range(shopify_orders)]
    woo = [harness.woocommerce_order() for _ in range(woocommerce_orders)]
    deliveries: list[harness.Delivery] = []
    woo_deliveries: list[harness.Delivery] = []
    lock = threading.Lock()

    def shopify_job(index: int) -> None:
        order = shopify[index]
        done = []
        if index % 4 == 0:  # orders/create before orders/paid: still one Purchase
            done.append(harness.deliver_like_shopify(http, shopify_url, settings, order, "orders/create",
                                                     retry_for=retry_for))  # fmt: skip
        webhook_id = f"rel-pause-{order['id']}"
        twins = 2 if index % 5 == 0 else 1  # Shopify sometimes delivers the same webhook twice at once
        threads = [threading.Thread(target=lambda: done.append(harness.deliver_like_shopify(
            http, shopify_url, settings, order, webhook_id=webhook_id, retry_for=retry_for)))
            for _ in range(twins)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with lock:
            deliveries.extend(done)

    def woo_job(index: int) -> None:
        result = harness.deliver_like_woocommerce(http, woo_url, settings, woo[index])
        with lock:
            woo_deliveries.append(result)

    # Interleaved: one WooCommerce order after every two Shopify orders, while there are both.
    tasks: list[tuple[Any, int]] = [(shopify_job, i) for i in range(shopify_orders)]
    for j in range(woocommerce_orders):
        tasks.insert(min(3 * j + 2, len(tasks)), (woo_job, j))

    def pause() -> None:
        time.sleep(pause_at)
        with harness.paused_group(rs.emulator_pgid("firestore")):
            time.sleep(pause_seconds)

    pauser = threading.Thread(target=pause, daemon=True)
    pauser.start()
    try:
        harness.paced(len(tasks) / traffic_seconds, traffic_seconds, lambda i: tasks[i][0](tasks[i][1]),
                      workers=min(len(tasks), 256))  # fmt: skip
    finally:
        pauser.join()

    woo_ids = {harness.woocommerce_purchase_id(settings["WOOCOMMERCE_SITE_URL"], o) for o in woo}
    parked_orders = {d.key.split()[1] for d in woo_deliveries if d.final and d.final.outcome == "parked"}
    replay: dict[str, Any] = {"parked": len(parked_orders)}
    if parked_orders:
        lines = harness.parked_lines({i for i in woo_ids if i.rsplit(":", 2)[1] in parked_orders})
        replayed = harness.replay_parked(lines, rs.stack.function_env("woocommerce_webhook"))
        replay.update(log_lines=len(lines), returncode=replayed.returncode, output=replayed.stdout[-500:])
    expected = {harness.shopify_purchase_id(shop, o) for o in shopify} | woo_ids
    tally = harness.settle(rs.sandbox, expected, timeout=90)
    return {
        **tally.summary(),
        "tally": tally,
        "shopify_5xx": sum(1 for d in deliveries for a in d.attempts if a.status and a.status >= 500),
        "shopify_never_2xx": {d.key: d.statuses() for d in deliveries if not d.delivered},
        "woocommerce_answers": dict(
            Counter(f"{d.final.status} {d.final.outcome}" for d in woo_deliveries if d.final)
        ),  # fmt: skip
        "woocommerce_not_2xx": [d.statuses() for d in woo_deliveries if not d.delivered],
        "woocommerce_replay": replay,
    }


# --- kills ---------------------------------------------------------------------------------


def kill_workers(rs: ReliabilityStack, name: str) -> list[int]:
    killed = rs.worker_pids(name)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    return killed


def _shopify_traffic(rs: ReliabilityStack, http: httpx.Client, orders: list[dict[str, Any]], seconds: float,
                     retry_for: float) -> list[harness.Delivery]:  # fmt: skip
    url, settings = rs.url("shopify_webhook") + "/", rs.settings

    def one(index: int) -> harness.Delivery:
        return harness.deliver_like_shopify(http, url, settings, orders[index], retry_for=retry_for)

    return harness.paced(len(orders) / seconds, seconds, one, workers=min(len(orders), 256))


def _shopify_summary(rs: ReliabilityStack, deliveries: list[harness.Delivery], orders: list[dict[str, Any]]
                     ) -> dict[str, Any]:  # fmt: skip
    shop = rs.settings["SHOPIFY_SHOP_DOMAIN"]
    tally = harness.settle(rs.sandbox, {harness.shopify_purchase_id(shop, o) for o in orders}, timeout=60)
    return {
        **tally.summary(),
        "tally": tally,
        "shopify_5xx": sum(1 for d in deliveries for a in d.attempts if a.status and a.status >= 500),
        "attempts_cut_or_refused": sum(1 for d in deliveries for a in d.attempts if a.status is None),
        "shopify_never_2xx": {d.key: d.statuses() for d in deliveries if not d.delivered},
    }


def shopify_worker_kills(rs: ReliabilityStack, http: httpx.Client, *, orders_per_round: int, kill_after: list[float],
                         retry_for: float = SHOPIFY_RETRY_FOR) -> dict[str, Any]:  # fmt: skip
    """Rounds of concurrent signed orders; each round, SIGKILL the Shopify worker ``kill_after[i]`` s into it.

    A burst keeps deliveries in flight when the kill lands, and the staggered
    delays cut them at different steps (delivery claim, click context, order
    claim, publish, mark), as an out-of-memory kill under load would.
    """
    from concurrent.futures import ThreadPoolExecutor

    rs.ensure_up("shopify_webhook")
    url, settings = rs.url("shopify_webhook") + "/", rs.settings
    batch = [harness.shopify_order() for _ in range(orders_per_round * len(kill_after))]
    warm_ups = [harness.shopify_order() for _ in kill_after]
    kills = []
    with ThreadPoolExecutor(len(batch)) as pool:
        futures = []
        for round_index, delay in enumerate(kill_after):
            # A fresh worker makes its clients on its first delivery: warm it, so the kill lands mid-work.
            futures.append(pool.submit(harness.deliver_like_shopify, http, url, settings, warm_ups[round_index]))
            futures[-1].result()
            orders = batch[round_index * orders_per_round : (round_index + 1) * orders_per_round]
            futures += [pool.submit(harness.deliver_like_shopify, http, url, settings, o, retry_for=retry_for)
                        for o in orders]  # fmt: skip
            time.sleep(delay)
            kills.append(kill_workers(rs, "shopify_webhook"))
        deliveries = [f.result() for f in futures]
    rs.ensure_up("shopify_webhook")
    return {**_shopify_summary(rs, deliveries, batch + warm_ups), "kills": kills}


def shopify_master_kill(rs: ReliabilityStack, http: httpx.Client, *, orders: int, seconds: float, kill_at: float,
                        retry_for: float = SHOPIFY_RETRY_FOR) -> dict[str, Any]:  # fmt: skip
    """SIGKILL the gunicorn master (the whole instance); the stack must start it again, as Cloud Run would."""
    rs.ensure_up("shopify_webhook")
    old_master = rs.master_pid("shopify_webhook")
    old_workers = rs.worker_pids("shopify_webhook")
    batch = [harness.shopify_order() for _ in range(orders)]
    restarted: dict[str, Any] = {"up_by_itself": False}

    def kill_and_watch() -> None:
        os.kill(old_master, signal.SIGKILL)
        killed_at = time.monotonic()
        # The orphaned worker notices its master is gone and exits; only a new process may answer after it.
        while any(harness.alive(p) for p in old_workers) and time.monotonic() - killed_at < 10:
            time.sleep(0.1)
        restarted["up_by_itself"] = rs.wait_replaced("shopify_webhook", old_master, RESTART_SECONDS)
        restarted["seconds"] = round(time.monotonic() - killed_at, 1)
        if not restarted["up_by_itself"]:
            rs.restart_function("shopify_webhook")  # so the retries can finish; the caller still sees it

    kill = harness.Stopwatch([(kill_at, kill_and_watch)])
    kill.start()
    try:
        deliveries = _shopify_traffic(rs, http, batch, seconds, retry_for)
    finally:
        kill.join()
        rs.ensure_up("shopify_webhook")
    return {**_shopify_summary(rs, deliveries, batch), "restart": restarted,
            "kill_errors": [repr(e) for e in kill.errors]}  # fmt: skip


def _envelope(rs: ReliabilityStack, index: int, tag: str) -> Any:
    from shared.domain.models import Envelope

    return Envelope.model_validate({
        "source": "shopify", "pixel_code": rs.settings["TIKTOK_PIXEL_CODE"], "event": "Purchase",
        "event_id": f"rel-{tag}:{uuid.uuid4().hex}", "event_time": int(time.time()) - 30,
        "user": {"email": [hashlib.sha256(f"buyer{index}@example.com".encode()).hexdigest()], "ip": "203.0.113.24"},
        "properties": {"currency": "EUR", "value": 10 + index, "order_id": str(index)}, "consent": "granted",
    })  # fmt: skip


def sender_kills(rs: ReliabilityStack, *, events: int, per_second: float, kill_at: list[float],
                 latency_ms: int, settle_seconds: float = 90.0) -> dict[str, Any]:  # fmt: skip
    """SIGKILL the sender's worker while TikTok requests (slowed to ``latency_ms``) are in flight.

    At-least-once is all a sender can promise for the request it dies in: TikTok
    may have accepted it before the kill, and the resend after the claim lease is
    deduplicated by TikTok on event_id (48 h). Such copies are reported apart;
    any other copy is a duplicate.
    """
    from google.cloud import pubsub_v1

    rs.ensure_up("sender")
    publisher = pubsub_v1.PublisherClient()
    envelopes = [_envelope(rs, i, "sender-kill") for i in range(events)]
    rs.faults(latency_ms=latency_ms)
    kills = harness.Stopwatch([(at, lambda: kill_workers(rs, "sender")) for at in kill_at])
    try:
        kills.start()

        def publish(index: int) -> str:
            envelope = envelopes[index]
            return publisher.publish(rs.topology["topic"], envelope.to_json_bytes(),
                                     **envelope.pubsub_attributes()).result(timeout=30)  # fmt: skip

        harness.paced(per_second, events / per_second, publish, workers=8)
        kills.join()
        # A push cut by a kill comes back only after the subscription's 60 s ack deadline, plus backoff.
        tally = harness.settle(rs.sandbox, {e.event_id for e in envelopes}, timeout=settle_seconds, quiet=8)
    finally:
        rs.faults()
        rs.ensure_up("sender")
    kill_times = [at for at, pids in kills.done if pids]
    latency = latency_ms / 1000
    in_flight = {
        r["request_id"]
        for r in harness.sandbox_requests(rs.sandbox)
        if any(r["received_at"] - 0.5 <= k <= r["received_at"] + latency + 0.5 for k in kill_times)
    }
    first_copy: dict[str, str] = {}
    for event in sorted(harness.sandbox_events(rs.sandbox), key=lambda e: e["received_at"]):
        first_copy.setdefault(event["event_id"], event["request_id"])
    unexplained = {i: n for i, n in tally.duplicated.items() if first_copy.get(i) not in in_flight}
    return {
        **tally.summary(),
        "tally": tally,
        "kills": len(kill_times),
        "kill_errors": [repr(e) for e in kills.errors],
        "resent_after_a_kill_in_flight": len(tally.duplicated) - len(unexplained),
        "unexplained_duplicates": unexplained,
    }


# --- poison ------------------------------------------------------------------------------------


def poison(rs: ReliabilityStack, http: httpx.Client, *, poison_per_second: int, legitimate_per_second: int,
           seconds: float) -> dict[str, Any]:  # fmt: skip
    """Collect requests with a lone surrogate in a custom property, mixed with legitimate ones, each its own shopper."""
    import json

    pixel, url = rs.settings["TIKTOK_PIXEL_CODE"], rs.url("collect") + "/"
    every = (poison_per_second + legitimate_per_second) / legitimate_per_second

    def one(index: int) -> tuple[str, str, int | str]:
        event_id = f"rel-poison-{uuid.uuid4().hex}"
        legitimate = int((index + 1) / every) != int(index / every)
        extra = {"note": "fine"} if legitimate else {"note": "\ud800"}
        # json.dumps escapes the surrogate as \ud800: valid JSON text, as a hostile page would send it.
        body = json.dumps(harness.collect_document(pixel, event_id, **extra)).encode()
        try:
            status: int | str = http.post(url, content=body, headers=harness.collect_headers(harness.shopper_ip(index)),
                                          timeout=15).status_code  # fmt: skip
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        return ("legitimate" if legitimate else "poison", event_id, status)

    results = harness.paced(poison_per_second + legitimate_per_second, seconds, one, workers=64)
    answers = {kind: dict(Counter(status for k, _, status in results if k == kind))
               for kind in ("legitimate", "poison")}  # fmt: skip
    accepted = {event_id for kind, event_id, status in results if kind == "legitimate" and status == 200}
    tally = harness.settle(rs.sandbox, accepted, timeout=60, quiet=2)
    legit_total = sum(answers["legitimate"].values())
    return {
        **tally.summary(),
        "tally": tally,
        "answers": answers,
        "legitimate_refused": legit_total - answers["legitimate"].get(200, 0),
        "5xx": sum(n for kind in answers.values() for s, n in kind.items() if isinstance(s, int) and s >= 500),
    }


# --- TikTok in trouble (benchmark only; the suite's test of it is the sender's) ------------------


def tiktok_faults(rs: ReliabilityStack, http: httpx.Client, *, shopify_orders: int, woocommerce_orders: int,
                  seconds: float, error_rate: float, twins: int = 20, copies: int = 20) -> dict[str, Any]:  # fmt: skip
    """Orders (and ``twins`` orders delivered ``copies`` times each) while the sandbox fails ``error_rate``."""
    settings, shop = rs.settings, rs.settings["SHOPIFY_SHOP_DOMAIN"]
    shopify = [harness.shopify_order() for _ in range(shopify_orders)]
    woo = [harness.woocommerce_order() for _ in range(woocommerce_orders)]
    tasks: list[Any] = [("shopify", o) for o in shopify] + [("woo", o) for o in woo]
    tasks += [("shopify", o) for o in shopify[:twins] for _ in range(copies - 1)]
    rs.faults(error_rate=error_rate, http_5xx=1, throttle=1, timeout=1, timeout_seconds=12)

    def one(index: int) -> harness.Delivery:
        kind, order = tasks[index]
        if kind == "woo":
            return harness.deliver_like_woocommerce(http, rs.url("woocommerce_webhook") + "/", settings, order)
        return harness.deliver_like_shopify(http, rs.url("shopify_webhook") + "/", settings, order)

    started = time.monotonic()
    try:
        deliveries = harness.paced(len(tasks) / seconds, seconds, one, workers=128)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    finally:
        rs.faults()
    expected = {harness.shopify_purchase_id(shop, o) for o in shopify}
    expected |= {harness.woocommerce_purchase_id(settings["WOOCOMMERCE_SITE_URL"], o) for o in woo}
    tally = harness.settle(rs.sandbox, expected, timeout=180, quiet=10)
    return {**tally.summary(), "tally": tally,
            "5xx": sum(1 for d in deliveries for a in d.attempts if a.status and a.status >= 500)}  # fmt: skip

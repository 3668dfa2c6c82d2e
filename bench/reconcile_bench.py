"""Reconciliation benchmark: how long one run takes for N orders in the local shop, and how many API calls.

Starts the local shop stand-in (``sandbox.shop``: Shopify's GraphQL Admin API and WooCommerce's REST
API, with Shopify's cost-based throttling) and the Firestore emulator on free ports, places ``--orders``
paid orders on each platform without webhooks (so every one is ``missing``), and runs one
reconciliation, compare only, as ``make reconcile`` does: list each shop's orders, read the pipeline's
three records per order by key. Printed per platform: seconds, orders per second, API calls (token
requests and throttling retries included), seconds waited for Shopify's bucket, Firestore documents read.

    python -m bench reconcile                  # make bench BENCH_ARGS=reconcile: a named part, not a default one
    python -m bench.reconcile_bench --orders 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import httpx  # noqa: E402
import localstack  # noqa: E402

from shared.infra.metrics import Counters  # noqa: E402

PIXEL = "CBENCHPIXEL01"


def _shop(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SHOP_FIXTURES": "", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "sandbox.shop", "--port", str(port), "--no-seed"], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_shop/config", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the local shop did not start")


class CountingStore:
    """The emulator's store, counting the documents reconciliation reads."""

    def __init__(self, store: Any) -> None:
        self.store, self.counters = store, Counters()

    def get_many(self, collection: str, keys: Any) -> Any:
        return self.store.get_many(collection, keys, counters=self.counters)


def run(orders: int) -> dict[str, Any]:
    from shared.infra.store import Store, make_client
    from shared.reconcile import job
    from shared.reconcile.settings import ReconcileSettings

    port = localstack.free_port()
    emulators = localstack.Emulators("bench-reconcile", localstack.free_port(), localstack.free_port())
    emulators.start()
    saved = {k: os.environ.get(k) for k in emulators.env}
    os.environ.update(emulators.env)
    shop = _shop(port)
    try:
        base = f"http://127.0.0.1:{port}"
        placed = {}
        for platform in ("shopify", "woocommerce"):
            started = time.monotonic()
            bulk = {"count": orders, "spacing_seconds": 1, "webhooks": False}
            httpx.post(f"{base}/_shop/{platform}/orders/bulk", json=bulk, timeout=600).raise_for_status()
            placed[platform] = round(time.monotonic() - started, 2)
        environ = {
            "GOOGLE_CLOUD_PROJECT": "bench-reconcile", "TIKTOK_PIXEL_CODE": PIXEL,
            "SHOPIFY_SHOP_DOMAIN": "local-shop.myshopify.com", "SHOPIFY_CLIENT_ID": "local-shopify-client-id",
            "SHOPIFY_CLIENT_SECRET": "local-shopify-secret", "SHOPIFY_ADMIN_URL": base,
            "WOOCOMMERCE_SITE_URL": "https://woo.local.test", "WOOCOMMERCE_API_KEY": "ck_local_read",
            "WOOCOMMERCE_API_SECRET": "cs_local_read", "WOOCOMMERCE_API_URL": base,
        }  # fmt: skip
        settings = ReconcileSettings.from_env(environ)
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
        since = until - dt.timedelta(days=(orders // 86_400) + 3)
        results: dict[str, Any] = {"settings": {"orders_per_platform": orders}, "placing_seconds": placed}
        for shop_ in job.shops(settings, environ):
            store = CountingStore(Store(make_client("bench-reconcile"), prefix=f"bench{shop_.source}_"))
            started = time.monotonic()
            (result,) = job.run([shop_], job.Pipeline(lambda s=store: s, lambda: None), since, until,
                                backfill=False).shops  # fmt: skip
            seconds = time.monotonic() - started
            assert result.error is None, result.error
            waited = getattr(shop_.orders, "waited", 0.0)
            results[shop_.source] = {
                "orders": result.orders, "missing": result.states["missing"], "seconds": round(seconds, 2),
                "orders_per_second": round(result.orders / seconds, 1), "api_calls": result.api_calls,
                "throttle_wait_seconds": round(waited, 2),
                "firestore_documents_read": store.counters.snapshot().get("firestore.reads", 0),
            }  # fmt: skip
        return results
    finally:
        shop.terminate()
        shop.wait(10)
        emulators.stop()
        localstack.restore_environ(saved)


def print_report(results: dict[str, Any]) -> None:
    print(f"reconcile, {results['settings']['orders_per_platform']} orders per platform in the local shop "
          "(compare only: every order missing)")  # fmt: skip
    for platform in ("shopify", "woocommerce"):
        row = results.get(platform)
        if row:
            print(f"  {platform}: {row['orders']} orders in {row['seconds']} s ({row['orders_per_second']}/s), "
                  f"{row['api_calls']} API calls, {row['throttle_wait_seconds']} s waited for the bucket, "
                  f"{row['firestore_documents_read']} Firestore documents read")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000, help="orders placed on each platform")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args.orders)
    print_report(results)
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

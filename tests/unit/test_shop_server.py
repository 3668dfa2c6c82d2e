"""``python -m sandbox.shop`` as a real process: auth, paging, throttling, and each platform's delivery rules.

A receiver in this test stands in for the pipeline's webhooks and answers what each test tells it to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = "2026-10"
WOO_READ = ("ck_local_read", "cs_local_read")
WOO_ADMIN = ("ck_local_admin", "cs_local_admin")
ORDERS_QUERY = """query Page($cursor: String, $window: String) {
  orders(first: 50, after: $cursor, query: $window, sortKey: UPDATED_AT) {
    edges { cursor node { legacyResourceId updatedAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Receiver:
    """An HTTP endpoint that records each POST (headers, body) and answers ``status``."""

    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)


@contextmanager
def receiver() -> Iterator[Receiver]:
    record = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(record.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    """The shop on a free port, without the fixture orders, Shopify's 4 hours of retries in about 1.4 s."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHOP_FIXTURES": ""}
    argv = [sys.executable, "-m", "sandbox.shop", "--host", "127.0.0.1", "--port", str(port), "--time-factor", "0.0001"]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the shop exited early: {process.stderr.read() if process.stderr else ''}")
            try:
                if httpx.get(url + "/", timeout=0.5).json().get("status") == "ok":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the shop did not answer GET / within 20 s")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def fresh(shop: str) -> str:
    httpx.post(shop + "/_shop/reset", timeout=5).raise_for_status()
    httpx.post(shop + "/_shop/config", json={"time_factor": 0.0001}, timeout=5).raise_for_status()
    return shop


def token(shop: str) -> str:
    answer = httpx.post(shop + "/admin/oauth/access_token", timeout=5, data={
        "client_id": "local-shopify-client-id", "client_secret": "local-shopify-secret",
        "grant_type": "client_credentials"})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["expires_in"] == 86399
    return answer.json()["access_token"]


def graphql(shop: str, access_token: str, query: str, **variables: Any) -> httpx.Response:
    return httpx.post(f"{shop}/admin/api/{VERSION}/graphql.json", json={"query": query, "variables": variables},
                      headers={"X-Shopify-Access-Token": access_token}, timeout=10)  # fmt: skip


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_wrong_credentials_get_each_platforms_401(fresh):
    shop = fresh
    for headers in ({}, {"X-Shopify-Access-Token": "shpat_wrong"}):
        answer = httpx.post(f"{shop}/admin/api/{VERSION}/graphql.json", json={"query": "{ shop { name } }"},
                            headers=headers, timeout=5)  # fmt: skip
        assert answer.status_code == 401
        assert answer.json() == {
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        }
    refused = httpx.post(shop + "/admin/oauth/access_token", json={"client_id": "local-shopify-client-id",
                         "client_secret": "nope", "grant_type": "client_credentials"}, timeout=5)  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
    assert graphql(shop, "shpat_local_admin_token", "{ shop { myshopifyDomain } }").json()["data"] == {
        "shop": {"myshopifyDomain": "local-shop.myshopify.com"}}  # fmt: skip
    orders = shop + "/wp-json/wc/v3/orders"
    assert httpx.get(orders, timeout=5).json() == {"code": "woocommerce_rest_cannot_view",
                                                   "message": "Sorry, you cannot list resources.",
                                                   "data": {"status": 401}}  # fmt: skip
    wrong = httpx.get(orders, auth=("ck_local_read", "cs_wrong"), timeout=5)
    assert wrong.status_code == 401 and wrong.json()["code"] == "woocommerce_rest_authentication_error"
    assert httpx.get(orders, auth=WOO_READ, timeout=5).status_code == 200


def test_paging_either_api_returns_every_order_of_the_window_exactly_once(fresh):
    shop = fresh
    for platform in ("shopify", "woocommerce"):
        made = httpx.post(f"{shop}/_shop/{platform}/orders/bulk", json={"count": 1234, "spacing_seconds": 2},
                          timeout=30).json()  # fmt: skip
        assert made["count"] == 1234
    shopify_ids, cursor, access = [], None, token(shop)
    while True:
        answer = graphql(shop, access, ORDERS_QUERY, cursor=cursor, window="updated_at:>='2020-01-01T00:00:00Z'")
        assert answer.status_code == 200 and "errors" not in answer.json(), answer.text
        page = answer.json()["data"]["orders"]
        shopify_ids += [e["node"]["legacyResourceId"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
    assert len(shopify_ids) == len(set(shopify_ids)) == 1234

    woo_ids: list[int] = []
    url: str | None = shop + "/wp-json/wc/v3/orders?per_page=100&orderby=date&order=asc&status=any"
    while url:
        answer = httpx.get(url, auth=WOO_READ, timeout=10)
        assert answer.headers["X-WP-Total"] == "1234" and answer.headers["X-WP-TotalPages"] == "13"
        woo_ids += [o["id"] for o in answer.json()]
        url = answer.links.get("next", {}).get("url")
    assert len(woo_ids) == len(set(woo_ids)) == 1234
    too_big = httpx.get(shop + "/wp-json/wc/v3/orders?per_page=101", auth=WOO_READ, timeout=5)
    assert too_big.status_code == 400 and too_big.json()["code"] == "rest_invalid_param"


def test_a_query_costing_more_than_is_available_is_throttled_then_runs_once_the_bucket_refills(fresh):
    shop = fresh
    httpx.post(shop + "/_shop/config", json={"graphql_maximum": 100, "graphql_restore_rate": 100}, timeout=5)
    httpx.post(shop + "/_shop/shopify/orders/bulk", json={"count": 80}, timeout=10).raise_for_status()
    query, access = "{ orders(first: 80) { nodes { id } } }", token(shop)
    first = graphql(shop, access, query).json()
    assert (
        first["extensions"]["cost"]["requestedQueryCost"] == 82 and first["extensions"]["cost"]["actualQueryCost"] == 82
    )
    throttled = graphql(shop, access, query)
    assert throttled.status_code == 200
    body = throttled.json()
    assert body["errors"][0]["message"] == "Throttled" and body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert "data" not in body and body["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 100.0
    wait_until(lambda: "data" in graphql(shop, access, query).json(), timeout=5)
    too_costly = graphql(
        shop, access, "{ orders(first: 250) { nodes { customer { id } totalPriceSet { shopMoney { amount } } } } }"
    ).json()  # noqa: E501
    assert too_costly["errors"][0]["message"].startswith(
        "Query cost is 1002, which exceeds the single query max cost limit (1000)"
    )
    assert too_costly["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_shopify_retries_one_webhook_with_the_same_id_then_gives_up_and_removes_the_subscription(fresh):
    shop = fresh
    with receiver() as endpoint:
        endpoint.status = 500
        created = httpx.post(shop + "/_shop/shopify/subscriptions", json={"topic": "orders/paid", "uri": endpoint.url},
                             timeout=5).json()["subscription"]  # fmt: skip
        order = httpx.post(shop + "/_shop/shopify/orders", json={"paid": True}, timeout=5).json()["order"]
        received = endpoint.wait_for(9, timeout=15)
        assert len(received) == 9  # the first attempt and 8 retries
        ids = {headers["x-shopify-webhook-id"] for headers, _ in received}
        events = {headers["x-shopify-event-id"] for headers, _ in received}
        assert len(ids) == 1 and len(events) == 1 and {b for _, b in received} == {received[0][1]}
        headers, body = received[0]
        expected = base64.b64encode(hmac.new(b"local-shopify-secret", body, hashlib.sha256).digest()).decode()
        assert headers["x-shopify-hmac-sha256"] == expected and headers["x-shopify-topic"] == "orders/paid"
        assert headers["x-shopify-shop-domain"] == "local-shop.myshopify.com"
        assert headers["x-shopify-api-version"] == VERSION and str(order["id"]).encode() in body

        def gave_up() -> bool:
            listed = httpx.get(shop + "/_shop/deliveries", params={"order_id": order["id"]}, timeout=5).json()
            return listed["deliveries"][0]["state"] == "gave_up"

        wait_until(gave_up)
        time.sleep(0.3)
        assert len(endpoint.received) == 9  # nothing after giving up
        subscriptions = httpx.get(shop + "/_shop/shopify/subscriptions", timeout=5).json()["subscriptions"]
        assert [s["removed_at"] is not None for s in subscriptions if s["id"] == created["id"]] == [True]
        listed = graphql(shop, token(shop), "{ webhookSubscriptions(first: 10) { nodes { id } } }").json()
        assert listed["data"]["webhookSubscriptions"]["nodes"] == []
        httpx.post(shop + "/_shop/shopify/orders", json={"paid": True}, timeout=5)
        time.sleep(0.3)
        assert len(endpoint.received) == 9  # a removed subscription receives nothing


def test_a_shopify_retry_that_succeeds_keeps_the_subscription(fresh):
    shop = fresh
    with receiver() as endpoint:
        endpoint.status = 503
        httpx.post(shop + "/_shop/shopify/subscriptions", json={"topic": "orders/create", "uri": endpoint.url},
                   timeout=5).raise_for_status()  # fmt: skip
        httpx.post(shop + "/_shop/shopify/orders", json={"paid": False}, timeout=5)
        endpoint.wait_for(3)
        endpoint.status = 200
        wait_until(lambda: httpx.get(shop + "/_shop/deliveries", timeout=5).json()["deliveries"][0]["state"]
                   == "delivered")  # fmt: skip
        assert [s["removed_at"] for s in httpx.get(shop + "/_shop/shopify/subscriptions").json()["subscriptions"]] == [
            None
        ]


def test_woocommerce_disables_a_failing_webhook_and_a_put_status_active_enables_it_again(fresh):
    shop = fresh
    with receiver() as endpoint:
        endpoint.status = 500
        hook = httpx.post(shop + "/_shop/woocommerce/webhooks", json={"topic": "order.created",
                          "delivery_url": endpoint.url}, timeout=5).json()["webhook"]  # fmt: skip
        for count in range(1, 8):
            httpx.post(shop + "/_shop/woocommerce/orders", json={"session": "s" * 32}, timeout=5)
            endpoint.wait_for(count)
        wait_until(lambda: httpx.get(f"{shop}/wp-json/wc/v3/webhooks/{hook['id']}", auth=WOO_READ,
                                     timeout=5).json()["status"] == "disabled")  # fmt: skip
        assert len(endpoint.received) == 7  # six failures are counted; the seventh finds more than 5 and disables
        headers, body = endpoint.received[0]
        expected = base64.b64encode(hmac.new(b"local-woocommerce-secret", body, hashlib.sha256).digest()).decode()
        assert headers["x-wc-webhook-signature"] == expected and headers["x-wc-webhook-topic"] == "order.created"
        assert headers["x-wc-webhook-source"] == "https://woo.local.test/" and headers["x-wc-webhook-id"] == str(
            hook["id"]
        )
        assert len({h["x-wc-webhook-delivery-id"] for h, _ in endpoint.received}) == 7  # new id every delivery
        shown = httpx.get(f"{shop}/wp-json/wc/v3/webhooks/{hook['id']}", auth=WOO_READ, timeout=5).json()
        assert "failure_count" not in shown and "secret" not in shown

        httpx.post(shop + "/_shop/woocommerce/orders", json={}, timeout=5)
        time.sleep(0.3)
        assert len(endpoint.received) == 7  # a disabled webhook delivers nothing

        read_only = httpx.put(f"{shop}/wp-json/wc/v3/webhooks/{hook['id']}", json={"status": "active"},
                              auth=WOO_READ, timeout=5)  # fmt: skip
        assert read_only.status_code == 401 and "write permissions" in read_only.json()["message"]
        enabled = httpx.put(f"{shop}/wp-json/wc/v3/webhooks/{hook['id']}", json={"status": "active"},
                            auth=WOO_ADMIN, timeout=5)  # fmt: skip
        assert enabled.status_code == 200 and enabled.json()["status"] == "active"
        endpoint.status = 200
        httpx.post(shop + "/_shop/woocommerce/orders", json={}, timeout=5)
        assert len(endpoint.wait_for(8)) == 8
        counted = httpx.get(shop + "/_shop/woocommerce/webhooks", timeout=5).json()["webhooks"]
        wait_until(lambda: httpx.get(shop + "/_shop/woocommerce/webhooks", timeout=5).json()["webhooks"][0][
            "failure_count"] == 0)  # fmt: skip
        assert counted[0]["status"] == "active"


def test_woocommerce_builds_the_payload_when_it_sends_and_429s_can_be_injected(fresh):
    shop = fresh
    with receiver() as endpoint:
        httpx.post(shop + "/_shop/woocommerce/webhooks", json={"topic": "order.updated", "delivery_url": endpoint.url},
                   timeout=5).raise_for_status()  # fmt: skip
        order = httpx.post(shop + "/_shop/woocommerce/orders", json={"paid": False}, timeout=5).json()["order"]
        httpx.post(f"{shop}/_shop/woocommerce/orders/{order['id']}/pay", json={}, timeout=5).raise_for_status()
        ((headers, body),) = endpoint.wait_for(1)
        assert b'"status": "processing"' in body and headers["x-wc-webhook-event"] == "updated"
    httpx.post(shop + "/_shop/config", json={"woocommerce_429_every": 2, "woocommerce_retry_after": 3}, timeout=5)
    statuses = [httpx.get(shop + "/wp-json/wc/v3/orders", auth=WOO_READ, timeout=5) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 429, 200, 429] and statuses[1].headers["Retry-After"] == "3"
